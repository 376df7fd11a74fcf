//! peas-sched (work in progress).
