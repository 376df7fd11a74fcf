//! Conversions between peas-proto, iroh and iroh-blobs types, and between iroh-blobs chunk
//! bitfields and partition indices.

use std::ops::Range;

use iroh::EndpointId;
use iroh_blobs::{
    Hash,
    protocol::{ChunkRanges, ChunkRangesExt},
};
use peas_proto::{ContentHash, Geometry, NodeId};

/// The iroh-blobs hash of a content hash (same BLAKE3 bytes).
pub fn to_blobs_hash(h: ContentHash) -> Hash {
    Hash::from_bytes(h.0)
}

/// The content hash of an iroh-blobs hash.
pub fn to_content_hash(h: Hash) -> ContentHash {
    ContentHash(*h.as_bytes())
}

/// The peas node id of an iroh endpoint id (same ed25519 key bytes).
pub fn to_node_id(id: EndpointId) -> NodeId {
    NodeId(*id.as_bytes())
}

/// The iroh endpoint id of a peas node id; `None` if the bytes are not a valid ed25519 key.
pub fn to_endpoint_id(id: NodeId) -> Option<EndpointId> {
    EndpointId::from_bytes(&id.0).ok()
}

/// Byte range covered by chunk range `r` (1 KiB chunks), clipped to `size`.
fn chunk_range_bytes(start: u64, end: Option<u64>, size: u64) -> Range<u64> {
    let s = start.saturating_mul(1024).min(size);
    let e = end.map_or(size, |e| e.saturating_mul(1024).min(size));
    s..e.max(s)
}

/// The maximal byte ranges of a blob of `size` bytes that `ranges` covers.
pub fn byte_ranges(ranges: &ChunkRanges, size: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    // boundaries alternate start, end, start, ...; an odd count means open-ended
    for pair in ranges.boundaries().chunks(2) {
        let br = match pair {
            [s, e] => chunk_range_bytes(s.0, Some(e.0), size),
            [s] => chunk_range_bytes(s.0, None, size),
            _ => continue,
        };
        if !br.is_empty() {
            out.push(br);
        }
    }
    out
}

/// The partitions of `geometry` fully covered by `ranges`.
pub fn covered_partitions(ranges: &ChunkRanges, geometry: &Geometry) -> Vec<u32> {
    let mut out = Vec::new();
    for br in byte_ranges(ranges, geometry.size()) {
        // partitions fully inside br
        let first = geometry.partition_of(br.start);
        let mut p = first;
        while p < geometry.partitions() {
            let pr = geometry.partition_range(p);
            if pr.start >= br.end {
                break;
            }
            if pr.start >= br.start && pr.end <= br.end {
                out.push(p);
            }
            p += 1;
        }
    }
    out
}

/// Whether `ranges` covers the whole blob of `size` bytes.
pub fn covers_all(ranges: &ChunkRanges, size: u64) -> bool {
    let want = ChunkRanges::bytes(0..size);
    ranges.is_superset(&want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = iroh::SecretKey::from_bytes(&[3; 32]).public();
        assert_eq!(to_endpoint_id(to_node_id(id)), Some(id));
        let h = Hash::new(b"x");
        assert_eq!(to_blobs_hash(to_content_hash(h)), h);
        assert_eq!(to_content_hash(h).0, *blake3::hash(b"x").as_bytes());
    }

    #[test]
    fn partitions_from_chunk_ranges() {
        let size = 10 * 16 * 1024 + 100; // 11 partitions of 16 KiB, the last one short
        let g = Geometry::new(size, 16 * 1024).expect("geometry");
        assert_eq!(g.partitions(), 11);
        let r = ChunkRanges::chunks(16..48);
        assert_eq!(covered_partitions(&r, &g), vec![1, 2]);
        let r = ChunkRanges::chunks(17..48);
        assert_eq!(covered_partitions(&r, &g), vec![2]);
        // the last, short partition: ranges end at ceil(size/1024) chunks or open-ended
        let r = ChunkRanges::chunks(160..161);
        assert_eq!(covered_partitions(&r, &g), vec![10]);
        let all = ChunkRanges::all();
        assert_eq!(covered_partitions(&all, &g).len(), 11);
        assert!(covers_all(&all, size));
        assert!(!covers_all(&ChunkRanges::chunks(0..160), size));
        assert_eq!(byte_ranges(&all, size), vec![0..size]);
    }
}
