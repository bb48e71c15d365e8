//! Content negotiation for `/metrics`: OpenMetrics 1.0 when `Accept` prefers it, else text
//! 0.0.4 (the only two formats we write), and gzip when `Accept-Encoding` allows it.

use msp_core::Format;

/// One media range of an `Accept` header: `(type, parameters, q)`.
fn ranges(header: &str) -> impl Iterator<Item = (String, Vec<(String, String)>, f32)> + '_ {
    header.split(',').filter_map(|part| {
        let mut pieces = part.split(';').map(str::trim);
        let media = pieces.next()?.to_ascii_lowercase();
        if media.is_empty() {
            return None;
        }
        let mut q = 1.0f32;
        let mut params = Vec::new();
        for p in pieces {
            let (k, v) = p.split_once('=')?;
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_owned());
            if k == "q" {
                q = v.parse().unwrap_or(0.0);
            } else {
                params.push((k, v));
            }
        }
        Some((media, params, q))
    })
}

/// The format to answer in for this `Accept` header.
pub fn format(accept: Option<&str>) -> Format {
    let Some(accept) = accept else { return Format::Text };
    let (mut om, mut text) = (0.0f32, 0.0f32);
    for (media, params, q) in ranges(accept) {
        let version = params.iter().find(|(k, _)| k == "version").map(|(_, v)| v.as_str());
        match media.as_str() {
            // We write OpenMetrics 1.0.0; 0.0.1 is the same text format under its old name.
            "application/openmetrics-text" if matches!(version, None | Some("1.0.0") | Some("0.0.1")) => om = om.max(q),
            "text/plain" if matches!(version, None | Some("0.0.4")) => text = text.max(q),
            "*/*" | "text/*" => text = text.max(q * 0.999),
            _ => {}
        }
    }
    if om > 0.0 && om > text {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// Whether `Accept-Encoding` allows gzip.
pub fn gzip(accept_encoding: Option<&str>) -> bool {
    let Some(h) = accept_encoding else { return false };
    let mut star = None;
    for (coding, _, q) in ranges(h) {
        match coding.as_str() {
            "gzip" | "x-gzip" => return q > 0.0,
            "*" => star = Some(q > 0.0),
            _ => {}
        }
    }
    star.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_default_accept_gets_openmetrics() {
        let prom3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
        assert_eq!(format(Some(prom3)), Format::OpenMetrics);
        let prom2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(format(Some(prom2)), Format::OpenMetrics);
    }

    #[test]
    fn everything_else_gets_text() {
        for accept in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("text/plain;version=0.0.4"),
            Some("application/json"),
            Some("application/openmetrics-text;version=2.0.0"),
            Some("application/openmetrics-text;q=0.2,text/plain;q=0.9"),
            Some("application/openmetrics-text;q=0"),
        ] {
            assert_eq!(format(accept), Format::Text, "{accept:?}");
        }
    }

    #[test]
    fn gzip_when_allowed() {
        assert!(gzip(Some("gzip")));
        assert!(gzip(Some("deflate, gzip;q=0.5")));
        assert!(gzip(Some("*")));
        assert!(!gzip(Some("gzip;q=0")));
        assert!(!gzip(Some("identity")));
        assert!(!gzip(None));
    }
}
