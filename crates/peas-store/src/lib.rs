//! peas-store (work in progress).
