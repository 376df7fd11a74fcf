//! peas-net (work in progress).
