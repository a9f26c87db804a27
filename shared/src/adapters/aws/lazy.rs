//! SDK clients built on first use.
//!
//! Building a service's first client parses that service's endpoint partition table, about
//! 0.7 M instructions each (measured with callgrind on the rotation function's init, where three
//! clients were a fifth of it). A function builds at start-up the clients its every invocation
//! calls, and these the ones only some invocations call (the bus, when there is something to
//! publish; the manifest, for the rotations that read it).

use std::fmt;
use std::sync::{Arc, OnceLock};

use super::SdkConfig;

/// A client built once, by whichever caller needs it first; clones share it.
pub struct LazyClient<C> {
    client: Arc<OnceLock<C>>,
    build: Arc<dyn Fn() -> C + Send + Sync>,
}

impl<C: 'static> LazyClient<C> {
    /// A client `build` makes from `sdk` the first time it is asked for.
    pub fn of(sdk: &SdkConfig, build: fn(&SdkConfig) -> C) -> Self {
        let sdk = sdk.clone();
        Self::with(move || build(&sdk))
    }

    /// A client `build` makes the first time it is asked for.
    pub fn with(build: impl Fn() -> C + Send + Sync + 'static) -> Self {
        Self {
            client: Arc::new(OnceLock::new()),
            build: Arc::new(build),
        }
    }

    pub fn get(&self) -> &C {
        self.client.get_or_init(|| (self.build)())
    }

    /// Whether the client has been built.
    pub fn is_built(&self) -> bool {
        self.client.get().is_some()
    }
}

/// A client already built (tests, tools), in the same place as a lazy one.
impl<C: Clone + Send + Sync + 'static> From<C> for LazyClient<C> {
    fn from(client: C) -> Self {
        let copy = client.clone();
        Self {
            client: Arc::new(OnceLock::from(client)),
            build: Arc::new(move || copy.clone()),
        }
    }
}

impl<C> Clone for LazyClient<C> {
    fn clone(&self) -> Self {
        Self {
            client: Arc::clone(&self.client),
            build: Arc::clone(&self.build),
        }
    }
}

impl<C: 'static> fmt::Debug for LazyClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyClient")
            .field("built", &self.is_built())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_client_is_built_on_first_use_once_for_every_clone() {
        let builds = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&builds);
        let lazy = LazyClient::with(move || counter.fetch_add(1, Ordering::SeqCst) + 100);
        let clone = lazy.clone();
        assert!(!lazy.is_built());
        assert_eq!(builds.load(Ordering::SeqCst), 0, "nothing built up front");
        assert_eq!(*clone.get(), 100);
        assert_eq!(*lazy.get(), 100);
        assert!(lazy.is_built());
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_built_client_serves_as_it_is() {
        let ready = LazyClient::from(String::from("ready"));
        assert!(ready.is_built());
        assert_eq!(ready.get(), "ready");
    }
}
