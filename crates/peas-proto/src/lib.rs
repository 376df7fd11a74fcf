//! peas-proto (work in progress).
