//! A running simulator described in files, for processes that talk to it: `url`, `ca.crt`
//! and `token` in one folder, `url` written last (atomically), so its presence means ready.

use std::path::Path;

use crate::server::Sim;

impl Sim {
    /// Writes `url`, `ca.crt` and `token` (readable by anyone: a container's user reads
    /// them) into `dir`.
    pub fn write_files(&self, dir: &Path, token: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.crt"), &self.pki.ca_pem)?;
        std::fs::write(dir.join("token"), token)?;
        std::fs::write(dir.join("url.tmp"), &self.url)?;
        std::fs::rename(dir.join("url.tmp"), dir.join("url"))
    }
}
