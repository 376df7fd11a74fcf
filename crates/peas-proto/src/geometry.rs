//! How a blob is cut into partitions: the unit of "I have this" in the swarm protocol.

use std::ops::Range;

/// iroh-blobs' chunk group size (16 KiB): the unit it verifies and stores. Partition sizes are
/// multiples of it, so a partition is always a whole number of verified chunk groups.
pub const CHUNK_GROUP_SIZE: u64 = 16 * 1024;
/// The largest piece (1 MiB): peers announce what they have in pieces of at most this size,
/// so a partition can be passed on while it is still arriving (see [`Geometry::pieces`]).
pub const MAX_PIECE_SIZE: u64 = 1 << 20;
/// The smallest allowed partition size (one chunk group).
pub const MIN_PARTITION_SIZE: u64 = CHUNK_GROUP_SIZE;
/// The largest allowed partition size (1 GiB).
pub const MAX_PARTITION_SIZE: u64 = 1 << 30;
/// The most partitions a blob may have (65 536). Keeps a full have-set at 8 KiB, so it fits in
/// one swarm frame, and bounds the planner's per-partition state.
pub const MAX_PARTITIONS: u32 = 1 << 16;
/// The number of partitions [`default_partition_size`] aims for.
pub const DEFAULT_TARGET_PARTITIONS: u64 = 256;
/// The smallest partition size [`default_partition_size`] picks (1 MiB).
pub const DEFAULT_MIN_PARTITION_SIZE: u64 = 1 << 20;
/// The largest partition size [`default_partition_size`] picks while the partition count stays
/// within [`MAX_PARTITIONS`] (64 MiB).
pub const DEFAULT_MAX_PARTITION_SIZE: u64 = 64 << 20;

/// Why a size / partition size pair is not a valid [`Geometry`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// The partition size is not a power of two.
    #[error("partition size {0} is not a power of two")]
    NotPowerOfTwo(u64),
    /// The partition size is below [`MIN_PARTITION_SIZE`].
    #[error("partition size {0} is smaller than the minimum of 16 KiB")]
    TooSmall(u64),
    /// The partition size is above [`MAX_PARTITION_SIZE`].
    #[error("partition size {0} is larger than the maximum of 1 GiB")]
    TooLarge(u64),
    /// The blob would have more than [`MAX_PARTITIONS`] partitions.
    #[error(
        "size {size} with partition size {partition_size} gives more than {MAX_PARTITIONS} partitions"
    )]
    TooManyPartitions {
        /// The blob size in bytes.
        size: u64,
        /// The partition size in bytes.
        partition_size: u64,
    },
}

/// The default partition size for a blob of `size` bytes.
///
/// Rule: the smallest power of two `p` with `size / p <= 256` ([`DEFAULT_TARGET_PARTITIONS`]),
/// clamped to [1 MiB, 64 MiB]; for blobs over 4 TiB (where 64 MiB partitions would exceed
/// [`MAX_PARTITIONS`]) `p` grows further, up to 1 GiB. Examples: 100 MiB → 1 MiB (100
/// partitions), 1 GiB → 4 MiB (256), 16 GiB → 64 MiB (256), 100 GiB → 64 MiB (1600).
///
/// Why: partitions are what peers advertise and what the planner reasons about ("rarest
/// first"). A few hundred to a few thousand of them keep have-sets tiny (≤ 256 bytes up to
/// 16 GiB) while giving enough pieces to spread over many peers; 1–64 MiB is 64–4096 chunk
/// groups, big enough to amortise a request's overhead and small enough that a fresh downloader
/// completes, and can serve, its first partition within a fraction of a second on a LAN.
/// The result is always a power of two ≥ 16 KiB, so `Geometry::new(size, p)` succeeds for every
/// size up to 64 TiB.
pub fn default_partition_size(size: u64) -> u64 {
    let target = size.div_ceil(DEFAULT_TARGET_PARTITIONS).max(1);
    let mut p = target
        .checked_next_power_of_two()
        .unwrap_or(MAX_PARTITION_SIZE)
        .clamp(DEFAULT_MIN_PARTITION_SIZE, DEFAULT_MAX_PARTITION_SIZE);
    let floor = size
        .div_ceil(u64::from(MAX_PARTITIONS))
        .checked_next_power_of_two()
        .unwrap_or(MAX_PARTITION_SIZE);
    if floor > p {
        p = floor.min(MAX_PARTITION_SIZE);
    }
    p
}

/// A blob's size and partition size, checked to be consistent.
///
/// Invariants: `partition_size` is a power of two in [`MIN_PARTITION_SIZE`,
/// `MAX_PARTITION_SIZE`] (hence a multiple of [`CHUNK_GROUP_SIZE`]), and
/// `partitions() = ceil(size / partition_size) <= MAX_PARTITIONS`. Every partition is
/// `partition_size` bytes except the last, which may be shorter. An empty blob has no partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    size: u64,
    partition_size: u64,
    partitions: u32,
}

impl Geometry {
    /// Checks the pair and computes the partition count.
    pub fn new(size: u64, partition_size: u64) -> Result<Self, GeometryError> {
        if !partition_size.is_power_of_two() {
            return Err(GeometryError::NotPowerOfTwo(partition_size));
        }
        if partition_size < MIN_PARTITION_SIZE {
            return Err(GeometryError::TooSmall(partition_size));
        }
        if partition_size > MAX_PARTITION_SIZE {
            return Err(GeometryError::TooLarge(partition_size));
        }
        let partitions = size.div_ceil(partition_size);
        if partitions > u64::from(MAX_PARTITIONS) {
            return Err(GeometryError::TooManyPartitions {
                size,
                partition_size,
            });
        }
        Ok(Self {
            size,
            partition_size,
            partitions: partitions as u32,
        })
    }

    /// The geometry with [`default_partition_size`]; fails only for blobs over 64 TiB.
    pub fn with_default_partition(size: u64) -> Result<Self, GeometryError> {
        Self::new(size, default_partition_size(size))
    }

    /// The blob size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The partition size in bytes (a power of two).
    pub fn partition_size(&self) -> u64 {
        self.partition_size
    }

    /// The number of partitions, `ceil(size / partition_size)`.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The byte range of partition `i`, clamped to the blob: the last one may be short, and an
    /// index at or past `partitions()` gives an empty range at `size`.
    pub fn partition_range(&self, i: u32) -> Range<u64> {
        let start = (u64::from(i) * self.partition_size).min(self.size);
        let end = start.saturating_add(self.partition_size).min(self.size);
        start..end
    }

    /// The partition that holds byte `offset`: `offset / partition_size`, clamped to the last
    /// partition (for an empty blob, 0). Use [`Geometry::checked_partition_of`] to detect
    /// offsets past the end.
    pub fn partition_of(&self, offset: u64) -> u32 {
        let i = offset / self.partition_size;
        i.min(u64::from(self.partitions.saturating_sub(1))) as u32
    }

    /// The partition that holds byte `offset`, or `None` if `offset >= size`.
    pub fn checked_partition_of(&self, offset: u64) -> Option<u32> {
        (offset < self.size).then(|| (offset / self.partition_size) as u32)
    }

    /// The length in bytes of partition `i` (0 past the end).
    pub fn partition_len(&self, i: u32) -> u64 {
        let r = self.partition_range(i);
        r.end - r.start
    }

    /// The swarm's piece geometry: the same blob cut into pieces of the partition size or
    /// [`MAX_PIECE_SIZE`], whichever is smaller (larger only when the blob would otherwise
    /// have more than [`MAX_PARTITIONS`] pieces). A piece never straddles two partitions.
    /// Peers announce, request and serve pieces: a node serves the first piece of a partition
    /// while the rest is still arriving, which shortens every hop of a partition through the
    /// swarm (see `docs/scheduling.md`).
    pub fn pieces(&self) -> Geometry {
        let mut piece = self.partition_size.min(MAX_PIECE_SIZE);
        while self.size.div_ceil(piece) > u64::from(MAX_PARTITIONS) {
            piece *= 2;
        }
        let piece = piece.min(self.partition_size);
        Geometry {
            size: self.size,
            partition_size: piece,
            partitions: self.size.div_ceil(piece) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn pieces_are_at_most_a_mebibyte_and_never_straddle_partitions() {
        let g = Geometry::new(GIB, 4 * MIB).unwrap();
        let p = g.pieces();
        assert_eq!(
            (p.size(), p.partition_size(), p.partitions()),
            (GIB, MIB, 1024)
        );
        let small = Geometry::new(10 * MIB, 256 * 1024).unwrap();
        assert_eq!(small.pieces(), small);
        // 64 GiB in 1 MiB pieces would be 65 536 pieces: still allowed; 128 GiB doubles them.
        let big = Geometry::new(128 * GIB, 64 * MIB).unwrap();
        assert_eq!(big.pieces().partition_size(), 2 * MIB);
        assert!(big.pieces().partitions() <= MAX_PARTITIONS);
    }

    proptest! {
        #[test]
        fn piece_geometry_is_valid(size in 0u64..(1 << 44), shift in 14u32..=30) {
            if let Ok(g) = Geometry::new(size, 1u64 << shift) {
                let p = g.pieces();
                prop_assert_eq!(Geometry::new(size, p.partition_size()), Ok(p));
                prop_assert!(g.partition_size() % p.partition_size() == 0);
            }
        }
    }

    #[test]
    fn default_rule_examples() {
        assert_eq!(default_partition_size(0), MIB);
        assert_eq!(default_partition_size(1), MIB);
        assert_eq!(default_partition_size(100 * MIB), MIB);
        assert_eq!(default_partition_size(5 * MIB), MIB);
        assert_eq!(default_partition_size(10 * GIB), 64 * MIB);
        assert_eq!(
            Geometry::with_default_partition(10 * GIB)
                .unwrap()
                .partitions(),
            160
        );
        assert_eq!(
            Geometry::with_default_partition(1 << 40)
                .unwrap()
                .partitions(),
            16384
        );
        assert_eq!(default_partition_size(GIB), 4 * MIB);
        assert_eq!(default_partition_size(GIB + 1), 8 * MIB);
        assert_eq!(default_partition_size(16 * GIB), 64 * MIB);
        assert_eq!(default_partition_size(100 * GIB), 64 * MIB);
        assert_eq!(default_partition_size(4096 * GIB), 64 * MIB);
        assert_eq!(default_partition_size(4096 * GIB + 1), 128 * MIB);
        assert_eq!(default_partition_size(u64::MAX), GIB);
    }

    #[test]
    fn invalid_geometries() {
        assert_eq!(
            Geometry::new(10, 3 * MIB),
            Err(GeometryError::NotPowerOfTwo(3 * MIB))
        );
        assert_eq!(Geometry::new(10, 0), Err(GeometryError::NotPowerOfTwo(0)));
        assert_eq!(Geometry::new(10, 8192), Err(GeometryError::TooSmall(8192)));
        assert_eq!(
            Geometry::new(10, 2 * GIB),
            Err(GeometryError::TooLarge(2 * GIB))
        );
        assert!(matches!(
            Geometry::new(u64::MAX, GIB),
            Err(GeometryError::TooManyPartitions { .. })
        ));
        assert!(
            Geometry::new(
                u64::from(MAX_PARTITIONS) * MIN_PARTITION_SIZE,
                MIN_PARTITION_SIZE
            )
            .is_ok()
        );
        assert!(
            Geometry::new(
                u64::from(MAX_PARTITIONS) * MIN_PARTITION_SIZE + 1,
                MIN_PARTITION_SIZE
            )
            .is_err()
        );
    }

    #[test]
    fn empty_blob_has_no_partitions() {
        let g = Geometry::new(0, MIB).unwrap();
        assert_eq!(g.partitions(), 0);
        assert_eq!(g.partition_range(0), 0..0);
        assert_eq!(g.partition_of(0), 0);
        assert_eq!(g.checked_partition_of(0), None);
    }

    proptest! {
        #[test]
        fn default_geometry_is_always_valid(size in any::<u64>().prop_map(|s| s >> (s % 64))) {
            let p = default_partition_size(size);
            prop_assert!(p.is_power_of_two() && p.is_multiple_of(CHUNK_GROUP_SIZE));
            if size <= 64 << 40 {
                prop_assert!(Geometry::with_default_partition(size).is_ok());
            }
        }

        #[test]
        fn partitions_tile_the_blob(size in 0u64..(1 << 34), shift in 14u32..=30) {
            let ps = 1u64 << shift;
            let Ok(g) = Geometry::new(size, ps) else {
                prop_assert!(size.div_ceil(ps) > u64::from(MAX_PARTITIONS));
                return Ok(());
            };
            let n = g.partitions();
            prop_assert_eq!(u64::from(n), size.div_ceil(ps));
            let mut covered = 0u64;
            // Check first, last and a few in the middle rather than all (n may be 65536).
            for i in [0, 1, n / 2, n.saturating_sub(2), n.saturating_sub(1)] {
                if i >= n { continue; }
                let r = g.partition_range(i);
                prop_assert_eq!(r.start, u64::from(i) * ps);
                prop_assert!(r.end > r.start && r.end - r.start <= ps);
                prop_assert_eq!(g.partition_of(r.start), i);
                prop_assert_eq!(g.partition_of(r.end - 1), i);
                prop_assert_eq!(g.checked_partition_of(r.end - 1), Some(i));
                if i + 1 < n { prop_assert_eq!(r.end - r.start, ps); }
                covered = covered.max(r.end);
            }
            prop_assert_eq!(covered, size);
            prop_assert_eq!(g.partition_range(n), size..size);
            prop_assert_eq!(g.checked_partition_of(size), None);
        }
    }
}
