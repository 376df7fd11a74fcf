//! Small deterministic swarm scenarios run through the simulator with the real planner.

use std::time::Duration;

use peas_sched::Config;
use peas_sim::{MIB, SimConfig, SimReport, run};
use proptest::prelude::*;

const KIB: u64 = 1024;

/// A small swarm: 8 MiB blob, 256 KiB partitions, 10 MiB/s nodes.
fn small(nodes: usize) -> SimConfig {
    SimConfig {
        nodes,
        size: 8 << 20,
        partition_size: 256 * KIB,
        upload: 10.0 * MIB,
        download: 10.0 * MIB,
        origin_upload: 10.0 * MIB,
        planner: Config {
            request_size: 256 * KIB,
            ..Config::default()
        },
        ..SimConfig::default()
    }
}

fn all_honest_done(r: &SimReport) -> bool {
    !r.hit_limit && r.completed_nodes == r.honest_nodes
}

#[test]
fn equal_swarm_completes_near_the_bound() {
    let r = run(small(8));
    assert!(all_honest_done(&r), "{r:?}");
    assert!(r.ratio < 2.0, "ratio {}", r.ratio);
    // Once every piece has a copy the origin serves like any other node: in a swarm of 8 on a
    // 32-piece blob it is one of nine equal uploaders. The 1.5x target is for the 1 GiB runs
    // of `cargo xtask sim` (1.03-1.08x there, see docs/scheduling.md).
    assert!(r.origin_egress_bytes as f64 <= 2.0 * r.size as f64, "{r:?}");
}

#[test]
fn same_seed_same_run() {
    let a = run(small(6));
    let b = run(small(6));
    assert_eq!(a, b);
    let c = run(SimConfig {
        seed: 99,
        ..small(6)
    });
    assert_ne!(a.node_completion_s, c.node_completion_s);
}

#[test]
fn two_peers_one_slow() {
    let r = run(SimConfig {
        slow_fraction: 0.5,
        slow_factor: 10.0,
        ..small(2)
    });
    assert!(all_honest_done(&r), "{r:?}");
    assert_eq!(r.slow_nodes.len(), 1);
    let slow = r.slow_nodes[0];
    let fast = 3 - slow;
    let t_fast = r.node_completion_s[fast - 1].unwrap_or(f64::INFINITY);
    let t_slow = r.node_completion_s[slow - 1].unwrap_or(f64::INFINITY);
    // The fast node is not held back by the slow one: it finishes within 2x of F/u.
    let f_over_u = (8 << 20) as f64 / (10.0 * MIB);
    assert!(t_fast <= 2.0 * f_over_u, "fast node took {t_fast}s");
    // The slow node is limited by its own download (F / (u/10)).
    assert!(
        t_slow >= 9.0 * f_over_u && t_slow <= 1.3 * 10.0 * f_over_u,
        "slow node took {t_slow}s"
    );
}

#[test]
fn late_joiners_complete() {
    let r = run(SimConfig {
        late_join_fraction: 0.5,
        ..small(10)
    });
    assert!(all_honest_done(&r), "{r:?}");
}

#[test]
fn origin_leaves_after_every_partition_has_a_copy() {
    let r = run(SimConfig {
        origin_leaves_after_copy: true,
        ..small(10)
    });
    assert!(r.origin_left, "{r:?}");
    assert!(all_honest_done(&r), "{r:?}");
    // The origin left early: it uploaded little more than one copy.
    assert!(r.origin_egress_bytes as f64 <= 1.5 * r.size as f64, "{r:?}");
}

#[test]
fn liar_is_banned_and_never_trusted_again() {
    let r = run(SimConfig {
        lying_nodes: 1,
        ..small(10)
    });
    assert_eq!(r.lying_nodes.len(), 1);
    assert_eq!(r.honest_nodes, 9);
    assert!(all_honest_done(&r), "{r:?}");
    assert_eq!(r.bytes_accepted_from_liars_after_first_bad, 0);
}

#[test]
fn many_liars_cannot_stop_the_swarm() {
    let r = run(SimConfig {
        lying_nodes: 4,
        latency: Duration::from_millis(5),
        ..small(12)
    });
    assert!(all_honest_done(&r), "{r:?}");
    assert_eq!(r.bytes_accepted_from_liars_after_first_bad, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// With the origin present (or leaving only once everything has a copy), every honest node
    /// completes, whatever the mix of slow, late and lying nodes.
    #[test]
    fn every_honest_node_completes(
        seed in any::<u64>(),
        nodes in 1usize..10,
        parts in 1u64..24,
        slow in 0.0f64..0.5,
        late in 0.0f64..0.5,
        liars in 0usize..3,
        leaves in any::<bool>(),
        req_chunks in 1u64..17,
    ) {
        let r = run(SimConfig {
            seed,
            nodes,
            size: parts * 256 * KIB - 1000,
            slow_fraction: slow,
            late_join_fraction: late,
            lying_nodes: liars.min(nodes.saturating_sub(1)),
            origin_leaves_after_copy: leaves,
            planner: Config {
                request_size: req_chunks * 16 * KIB,
                ..Config::default()
            },
            max_events: 3_000_000,
            ..small(nodes)
        });
        prop_assert!(all_honest_done(&r), "{:?}", r);
        prop_assert_eq!(r.bytes_accepted_from_liars_after_first_bad, 0);
    }
}
