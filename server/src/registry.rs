//! Enrichers by name: the built-ins, plus any an embedding program registers.

use std::collections::BTreeMap;
use std::sync::Arc;

use msp_core::Enricher;
use msp_enrichers::Options;

type Factory = Arc<dyn Fn(&Options) -> Arc<dyn Enricher> + Send + Sync>;

/// The enrichers configuration can name.
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl Registry {
    /// The built-ins: `node`, `labels`, `owner`.
    pub fn builtin() -> Self {
        let mut r = Registry::default();
        for &name in msp_enrichers::KNOWN {
            r.factories.insert(
                name.to_owned(),
                Arc::new(move |o: &Options| {
                    msp_enrichers::builtin(name, o).unwrap_or_else(|| unreachable!("{name} is built in"))
                }),
            );
        }
        r
    }

    /// Makes `enricher` selectable by its name (replacing a built-in of the same name).
    pub fn register(&mut self, enricher: Arc<dyn Enricher>) -> &mut Self {
        let name = enricher.name().to_owned();
        self.factories.insert(name, Arc::new(move |_: &Options| enricher.clone()));
        self
    }

    /// Whether `name` is known.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// The known names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// The enrichers for `names`, in that order (unknown names are skipped: the
    /// configuration check has already refused them).
    pub fn build(&self, names: &[String], options: &Options) -> Vec<Arc<dyn Enricher>> {
        names.iter().filter_map(|n| self.factories.get(n).map(|f| f(options))).collect()
    }
}
