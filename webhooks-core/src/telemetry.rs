//! Stand-ins for `metrics` and `tracing` when their features are off.
//!
//! The facade and the dispatcher call `metrics::counter!(...)` and
//! `tracing::info!(...)` as usual; without the feature, a module imports
//! `crate::telemetry::{metrics, tracing}` in place of the crate, and the
//! calls compile to nothing. Field values are still borrowed, so a variable
//! read only by an event is not reported as unused.

// A stand-in for each name used anywhere; which ones a build uses depends
// on the features.
#![allow(dead_code, unused_imports)]

#[cfg(not(feature = "metrics"))]
pub(crate) mod metrics {
    /// A metric handle that records nothing.
    pub(crate) struct Noop;

    impl Noop {
        pub(crate) fn increment(&self, _value: u64) {}
        pub(crate) fn set(&self, _value: f64) {}
        pub(crate) fn record(&self, _value: f64) {}
    }

    macro_rules! metric {
        ($($arguments:tt)*) => {
            $crate::telemetry::metrics::Noop
        };
    }
    pub(crate) use metric as counter;
    pub(crate) use metric as gauge;
    pub(crate) use metric as histogram;
}

#[cfg(not(feature = "tracing"))]
pub(crate) mod tracing {
    /// A span that records nothing.
    #[derive(Clone, Debug)]
    pub(crate) struct Span;

    impl Span {
        pub(crate) fn current() -> Self {
            Span
        }

        pub(crate) fn record<V>(&self, _field: &str, _value: V) -> &Self {
            self
        }

        pub(crate) fn in_scope<T>(&self, work: impl FnOnce() -> T) -> T {
            work()
        }
    }

    /// Futures run as they are: there is no span to enter.
    pub(crate) trait Instrument: Sized {
        fn instrument(self, _span: Span) -> Self {
            self
        }
    }

    impl<T: std::future::Future> Instrument for T {}

    pub(crate) mod field {
        /// A field without a value yet.
        pub(crate) struct Empty;

        pub(crate) fn display<T>(value: T) -> T {
            value
        }
    }

    /// Borrows each field's value and the message's arguments, then drops
    /// them: `key = value`, `key = %value`, `key = ?value`, `%value`,
    /// `?value`, `value`, then an optional format string and arguments.
    macro_rules! fields {
        () => {};
        ($key:ident = % $value:expr $(, $($rest:tt)*)?) => {
            let _ = &$value;
            $crate::telemetry::tracing::fields!($($($rest)*)?);
        };
        ($key:ident = ? $value:expr $(, $($rest:tt)*)?) => {
            let _ = &$value;
            $crate::telemetry::tracing::fields!($($($rest)*)?);
        };
        ($key:ident = $value:expr $(, $($rest:tt)*)?) => {
            let _ = &$value;
            $crate::telemetry::tracing::fields!($($($rest)*)?);
        };
        (% $value:ident $(, $($rest:tt)*)?) => {
            let _ = &$value;
            $crate::telemetry::tracing::fields!($($($rest)*)?);
        };
        (? $value:ident $(, $($rest:tt)*)?) => {
            let _ = &$value;
            $crate::telemetry::tracing::fields!($($($rest)*)?);
        };
        ($value:ident $(, $($rest:tt)*)?) => {
            let _ = &$value;
            $crate::telemetry::tracing::fields!($($($rest)*)?);
        };
        ($message:literal $(, $($arguments:tt)*)?) => {
            let _ = format_args!($message $(, $($arguments)*)?);
        };
    }

    macro_rules! event {
        ($($fields:tt)*) => {{
            $crate::telemetry::tracing::fields!($($fields)*);
        }};
    }

    macro_rules! span {
        ($name:literal $(, $($fields:tt)*)?) => {{
            $crate::telemetry::tracing::fields!($($($fields)*)?);
            $crate::telemetry::tracing::Span
        }};
    }

    pub(crate) use event as debug;
    pub(crate) use event as error;
    pub(crate) use event as info;
    pub(crate) use event as warn;
    pub(crate) use fields;
    pub(crate) use span as info_span;
}
