//! Enrichers by name: the built-ins, plus any an embedding program registers. An enricher
//! may own a section of the configuration (`[labels]`, or an embedder's `[team]`): its
//! factory reads that section, strictly typed, when the service is built.

use std::collections::BTreeMap;
use std::sync::Arc;

use figment::Figment;
use msp_core::{EnrichError, Enricher};
use msp_enrichers::{LabelsEnricher, LabelsOptions, NodeEnricher, OwnerEnricher};
use serde::de::DeserializeOwned;

/// Makes an enricher from the configuration.
type Factory = Arc<dyn Fn(&Figment) -> Result<Arc<dyn Enricher>, EnrichError> + Send + Sync>;

/// Reads an enricher's section of the configuration, and nothing more.
type Check = Arc<dyn Fn(&Figment) -> Result<(), EnrichError> + Send + Sync>;

struct Registered {
    /// The configuration section it reads, and how it is read, if any.
    section: Option<(String, Check)>,
    make: Factory,
}

/// The enrichers configuration can name.
#[derive(Clone, Default)]
pub struct Registry {
    known: BTreeMap<String, Arc<Registered>>,
    /// What `enrichers` is when the configuration does not set it, in order.
    defaults: Vec<String>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.known.keys()).finish()
    }
}

/// Reads `section` of `figment` as a `T`; a missing section is `T::default()`.
fn section<T: DeserializeOwned + Default>(figment: &Figment, section: &str) -> Result<T, EnrichError> {
    if !figment.contains(section) {
        return Ok(T::default());
    }
    figment.extract_inner(section).map_err(|e| section_error(section, e).into())
}

/// `e`, from reading `section`, naming its key as written (`labels.typo`): figment puts the
/// section last in an inner extraction's path, so its own message read `TYPO.LABELS`.
fn section_error(section: &str, e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let mut path = e.path.clone();
            if path.last().is_some_and(|last| last == section) {
                path.pop();
            }
            path.insert(0, section.to_owned());
            let source = crate::config::origin(e.metadata.as_ref(), &path.join("."));
            match &e.kind {
                // As our own sections say it (figment's wording nests backquotes in backquotes).
                figment::error::Kind::UnknownField(_, known) => {
                    let parent = &path[..path.len().saturating_sub(1)];
                    let known = crate::config::known_beside(e.metadata.as_ref(), parent, known);
                    format!("[{section}]: key `{}`{source} is not known; known keys: {known}", path.join("."))
                }
                figment::error::Kind::InvalidType(found, expected) => {
                    let key = path.join(".").to_lowercase();
                    format!(
                        "[{section}]: key `{key}`{source}: {}",
                        crate::config::wrong_type(&key, &found.to_string(), expected)
                    )
                }
                kind => format!("[{section}]: {kind} for key \"{}\"{source}", path.join(".")),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Registry {
    /// The built-ins: `node`, `labels` (reading `[labels]`) and `owner`, all three enabled
    /// by default.
    pub fn builtin() -> Self {
        let mut r = Registry::default();
        r.register(Arc::new(NodeEnricher));
        r.register_with("labels", "labels", |options: LabelsOptions| Ok(Arc::new(LabelsEnricher::new(options)?)));
        r.register(Arc::new(OwnerEnricher));
        r.defaults = msp_enrichers::DEFAULT.iter().map(|s| s.to_string()).collect();
        r
    }

    /// Enables `name` where the configuration does not set `enrichers`, after those enabled
    /// so before (the built-ins): an embedder's own enricher runs without the operator
    /// listing every enricher again. A configuration that sets `enrichers` says it all.
    pub fn enable_by_default(&mut self, name: &str) -> &mut Self {
        if !self.defaults.iter().any(|d| d == name) {
            self.defaults.push(name.to_owned());
        }
        self
    }

    /// What `enrichers` is when the configuration does not set it ([`Config::load`]).
    ///
    /// [`Config::load`]: crate::Config::load
    pub fn defaults(&self) -> &[String] {
        &self.defaults
    }

    /// Makes `enricher` selectable by its name (replacing one of the same name).
    pub fn register(&mut self, enricher: Arc<dyn Enricher>) -> &mut Self {
        let name = enricher.name().to_owned();
        let make: Factory = Arc::new(move |_: &Figment| Ok(enricher.clone()));
        self.known.insert(name, Arc::new(Registered { section: None, make }));
        self
    }

    /// Makes `name` selectable, built by `make` from the configuration's `section` (for
    /// example `[team]`, or `MSP_TEAM__CHANNEL`), read as a `T`. A missing section is
    /// `T::default()`; `T` decides how strict it is (`#[serde(deny_unknown_fields)]`).
    pub fn register_with<T, F>(&mut self, name: &str, section: &str, make: F) -> &mut Self
    where
        T: DeserializeOwned + Default + 'static,
        F: Fn(T) -> Result<Arc<dyn Enricher>, EnrichError> + Send + Sync + 'static,
    {
        let key = section.to_owned();
        let make: Factory = Arc::new(move |figment: &Figment| make(self::section(figment, &key)?));
        let key = section.to_owned();
        let check: Check = Arc::new(move |figment: &Figment| self::section::<T>(figment, &key).map(drop));
        self.known.insert(name.to_owned(), Arc::new(Registered { section: Some((section.to_owned(), check)), make }));
        self
    }

    /// Whether `name` is known.
    pub fn contains(&self, name: &str) -> bool {
        self.known.contains_key(name)
    }

    /// The known names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.known.keys().map(String::as_str).collect()
    }

    /// The configuration sections the enrichers read, sorted.
    pub fn sections(&self) -> Vec<&str> {
        let mut sections: Vec<&str> =
            self.known.values().filter_map(|r| Some(r.section.as_ref()?.0.as_str())).collect();
        sections.sort_unstable();
        sections.dedup();
        sections
    }

    /// Reads the configuration section of `name` from `figment`, as building it would,
    /// without building it (an enricher not enabled is not built: its factory may connect
    /// somewhere, or start a task); `Ok` if it reads none, or `figment` has no such section.
    pub fn check_section(&self, name: &str, figment: &Figment) -> Result<(), EnrichError> {
        match self.known.get(name).and_then(|r| r.section.as_ref()) {
            Some((key, check)) if figment.contains(key) => check(figment),
            _ => Ok(()),
        }
    }

    /// The configuration section `name` reads, if it reads one.
    pub fn section(&self, name: &str) -> Option<&str> {
        Some(self.known.get(name)?.section.as_ref()?.0.as_str())
    }

    /// Whether some enricher reads the top-level configuration key `key`.
    pub fn owns_section(&self, key: &str) -> bool {
        self.known.values().any(|r| r.section.as_ref().is_some_and(|(s, _)| s == key))
    }

    /// Builds `name` from `figment` (`None`: not registered).
    pub fn build(&self, name: &str, figment: &Figment) -> Option<Result<Arc<dyn Enricher>, EnrichError>> {
        self.known.get(name).map(|r| (r.make)(figment))
    }
}
