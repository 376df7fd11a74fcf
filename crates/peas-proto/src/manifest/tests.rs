use super::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const SECRET: [u8; 32] = [42; 32];

fn sample_draft() -> ManifestDraft {
    ManifestDraft {
        hash: ContentHash::of(b"content"),
        size: 3 << 30,
        name: SafeName::new("big.bin").unwrap(),
        partition_size: 4 << 20,
        created_at: 1_763_700_000,
        owners: vec![
            Owner {
                id: node_id_from_secret(&SECRET),
                addrs: vec![
                    "127.0.0.1:4433".parse().unwrap(),
                    "[::1]:4433".parse().unwrap(),
                ],
                relay: None,
            },
            Owner {
                id: NodeId([9; 32]),
                addrs: vec![],
                relay: Some("https://relay.example/".into()),
            },
        ],
    }
}

fn sample() -> Manifest {
    sample_draft().sign(&SECRET).unwrap()
}

/// Signs an arbitrary body, bypassing the draft's checks, to test the decoder's checks.
fn sign_raw(body: &Body, secret: &[u8; 32]) -> Vec<u8> {
    let key = SigningKey::from_bytes(secret);
    let body_bytes = encode_body(body);
    let sig = key.sign(&signed_message(MANIFEST_VERSION, &body_bytes));
    let mut out = FILE_MAGIC.to_vec();
    out.push(MANIFEST_VERSION);
    out.extend_from_slice(&body_bytes);
    out.extend_from_slice(&sig.to_bytes());
    out
}

fn raw_body() -> Body {
    let m = sample();
    m.body.clone()
}

#[test]
fn file_layout() {
    let m = sample();
    let b = m.to_file_bytes();
    assert_eq!(&b[..4], b"PEAS");
    assert_eq!(b[4], 1);
    // The body starts with the 32 raw hash bytes.
    assert_eq!(&b[5..37], m.hash().as_bytes());
    assert_eq!(&b[b.len() - 64..], m.signature());
    assert_eq!(m.creator(), node_id_from_secret(&SECRET));
    assert_eq!(m.geometry().partitions(), 768);
    assert_eq!(m.version(), 1);
    assert_eq!(Manifest::from_file_bytes(&b).unwrap(), m);
}

#[test]
fn ticket_roundtrip_and_leniency() {
    let m = sample();
    let t = m.to_ticket();
    assert!(t.starts_with("peas1"));
    assert!(
        t[5..]
            .bytes()
            .all(|c| matches!(c, b'a'..=b'z' | b'2'..=b'7'))
    );
    assert!(
        t.len() < 600,
        "ticket is short enough to paste: {}",
        t.len()
    );
    assert_eq!(Manifest::from_ticket(&t).unwrap(), m);
    assert_eq!(
        Manifest::decode_any(format!("  \n{t}\r\n").as_bytes()).unwrap(),
        m
    );
    assert_eq!(
        Manifest::decode_any(t.to_uppercase().as_bytes()).unwrap(),
        m
    );
    assert_eq!(Manifest::decode_any(&m.to_file_bytes()).unwrap(), m);
    assert!(matches!(
        Manifest::from_ticket("peas1!!!"),
        Err(ManifestError::BadTicket(_))
    ));
    assert!(matches!(
        Manifest::from_ticket("nope"),
        Err(ManifestError::BadTicket(_))
    ));
    assert_eq!(Manifest::decode_any(b"   "), Err(ManifestError::Empty));
    assert_eq!(Manifest::decode_any(b""), Err(ManifestError::Empty));
    assert_eq!(Manifest::decode_any(b"hello"), Err(ManifestError::BadMagic));
    // A ticket with one character dropped or changed fails.
    let mut chars: Vec<char> = t.chars().collect();
    chars.pop();
    assert!(Manifest::from_ticket(&chars.iter().collect::<String>()).is_err());
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'a' { 'b' } else { 'a' };
    assert!(Manifest::from_ticket(&chars.iter().collect::<String>()).is_err());
}

#[test]
fn every_single_byte_flip_is_rejected() {
    let b = sample().to_file_bytes();
    for i in 0..b.len() {
        for x in 1u8..=255 {
            let mut c = b.clone();
            c[i] ^= x;
            assert!(
                Manifest::from_file_bytes(&c).is_err(),
                "flip {x:#x} at {i} accepted"
            );
        }
    }
}

#[test]
fn every_truncation_and_extension_is_rejected() {
    let b = sample().to_file_bytes();
    for n in 0..b.len() {
        let e = Manifest::from_file_bytes(&b[..n]).unwrap_err();
        assert!(!e.to_string().contains('\n'));
    }
    let mut longer = b.clone();
    longer.push(0);
    assert_eq!(
        Manifest::from_file_bytes(&longer),
        Err(ManifestError::TrailingBytes(1))
    );
    assert_eq!(
        Manifest::from_file_bytes(&b[..b.len() - 1]),
        Err(ManifestError::Truncated)
    );
}

#[test]
fn specific_errors() {
    let b = sample().to_file_bytes();
    let mut v = b.clone();
    v[4] = 7;
    let e = Manifest::from_file_bytes(&v).unwrap_err();
    assert_eq!(e.to_string(), "unsupported manifest version 7");
    let mut s = b.clone();
    let last = s.len() - 1;
    s[last] ^= 1;
    assert_eq!(
        Manifest::from_file_bytes(&s).unwrap_err().to_string(),
        "manifest signature does not verify"
    );
    assert_eq!(
        Manifest::from_file_bytes(&vec![0u8; MAX_MANIFEST_LEN + 1]),
        Err(ManifestError::TooLarge {
            len: MAX_MANIFEST_LEN + 1,
            max: MAX_MANIFEST_LEN
        })
    );
    assert_eq!(
        Manifest::from_file_bytes(b"PEA").unwrap_err().to_string(),
        "manifest is truncated"
    );
    // Signed by a different key than the claimed creator.
    let mut body = raw_body();
    body.creator = node_id_from_secret(&[1; 32]);
    assert_eq!(
        Manifest::from_file_bytes(&sign_raw(&body, &SECRET)),
        Err(ManifestError::BadSignature)
    );
}

#[test]
fn unsafe_names_are_rejected_at_decode() {
    for bad in ["../../etc/passwd", "/etc/passwd", "a/b", "..", "C:\\x", ""] {
        let mut body = raw_body();
        body.name = bad.into();
        let e = Manifest::from_file_bytes(&sign_raw(&body, &SECRET)).unwrap_err();
        assert!(matches!(e, ManifestError::UnsafeName(_)), "{bad:?}: {e}");
        let t = format!(
            "peas1{}",
            BASE32_NOPAD
                .encode(&sign_raw(&body, &SECRET))
                .to_ascii_lowercase()
        );
        assert!(matches!(
            Manifest::decode_any(t.as_bytes()),
            Err(ManifestError::UnsafeName(_))
        ));
    }
}

#[test]
fn inconsistent_bodies_are_rejected_at_decode() {
    let check = |f: &dyn Fn(&mut Body), want: &dyn Fn(&ManifestError) -> bool| {
        let mut body = raw_body();
        f(&mut body);
        let e = Manifest::from_file_bytes(&sign_raw(&body, &SECRET)).unwrap_err();
        assert!(want(&e), "unexpected error {e}");
    };
    check(&|b| b.partition_size = 3 << 20, &|e| {
        matches!(e, ManifestError::Geometry(GeometryError::NotPowerOfTwo(_)))
    });
    check(&|b| b.partition_size = 1024, &|e| {
        matches!(e, ManifestError::Geometry(_))
    });
    check(&|b| b.size = u64::MAX, &|e| {
        matches!(e, ManifestError::Geometry(_))
    });
    check(
        &|b| {
            b.owners = (0..65u8)
                .map(|i| Owner {
                    id: NodeId([i; 32]),
                    addrs: vec![],
                    relay: None,
                })
                .collect()
        },
        &|e| matches!(e, ManifestError::TooManyOwners(65)),
    );
    check(
        &|b| {
            let o = b.owners[0].clone();
            b.owners.push(o);
        },
        &|e| matches!(e, ManifestError::DuplicateOwner(_)),
    );
    check(
        &|b| b.owners[0].addrs = vec!["1.2.3.4:5".parse().unwrap(); 17],
        &|e| matches!(e, ManifestError::TooManyAddrs { count: 17, .. }),
    );
    check(&|b| b.owners[0].relay = Some("x".repeat(257)), &|e| {
        matches!(e, ManifestError::RelayTooLong { len: 257, .. })
    });
    // The draft refuses the same things before signing.
    let mut d = sample_draft();
    d.partition_size = 12345;
    assert!(d.sign(&SECRET).is_err());
}

#[test]
fn creator_key_must_be_a_curve_point() {
    // Find a 32-byte string that is not a valid compressed Edwards point.
    let bad = (0u8..=255)
        .map(|i| [i; 32])
        .find(|b| VerifyingKey::from_bytes(b).is_err())
        .expect("some constant byte string is not a point");
    let mut body = raw_body();
    body.creator = NodeId(bad);
    assert_eq!(
        Manifest::from_file_bytes(&sign_raw(&body, &SECRET)),
        Err(ManifestError::BadCreatorKey)
    );
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, p)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), p)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, p)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), p)),
    ]
}

fn arb_owner() -> impl Strategy<Value = Owner> {
    (
        any::<[u8; 32]>(),
        proptest::collection::vec(arb_addr(), 0..=MAX_ADDRS_PER_OWNER),
        proptest::option::of("[a-z:/.]{0,40}"),
    )
        .prop_map(|(id, addrs, relay)| Owner {
            id: NodeId(id),
            addrs,
            relay,
        })
}

fn arb_draft() -> impl Strategy<Value = ManifestDraft> {
    (
        any::<[u8; 32]>(),
        0u64..(1 << 40),
        "[a-zA-Z0-9_ .é-]{0,60}",
        14u32..=30,
        any::<u64>(),
        proptest::collection::vec(arb_owner(), 0..6),
    )
        .prop_filter_map("valid", |(h, size, name, shift, created_at, owners)| {
            let name = SafeName::new(format!("f{name}")).ok()?;
            let partition_size = 1u64 << shift;
            Geometry::new(size, partition_size).ok()?;
            let mut seen = BTreeSet::new();
            let owners = owners.into_iter().filter(|o| seen.insert(o.id)).collect();
            Some(ManifestDraft {
                hash: ContentHash(h),
                size,
                name,
                partition_size,
                created_at,
                owners,
            })
        })
}

proptest! {
    #[test]
    fn roundtrip_file_and_ticket(draft in arb_draft(), secret in any::<[u8; 32]>()) {
        let m = draft.clone().sign(&secret).unwrap();
        prop_assert_eq!(m.hash(), draft.hash);
        prop_assert_eq!(m.size(), draft.size);
        prop_assert_eq!(m.name(), &draft.name);
        prop_assert_eq!(m.partition_size(), draft.partition_size);
        prop_assert_eq!(m.created_at(), draft.created_at);
        prop_assert_eq!(m.owners(), &draft.owners[..]);
        prop_assert_eq!(m.creator(), node_id_from_secret(&secret));
        let file = m.to_file_bytes();
        prop_assert_eq!(&Manifest::from_file_bytes(&file).unwrap(), &m);
        prop_assert_eq!(&Manifest::decode_any(&file).unwrap(), &m);
        prop_assert_eq!(&Manifest::from_ticket(&m.to_ticket()).unwrap(), &m);
        prop_assert_eq!(&Manifest::decode_any(m.to_ticket().as_bytes()).unwrap(), &m);
    }

    #[test]
    fn random_flip_or_truncation_is_rejected(draft in arb_draft(), pos in any::<prop::sample::Index>(), x in 1u8..=255, cut in any::<prop::sample::Index>()) {
        let file = draft.sign(&SECRET).unwrap().to_file_bytes();
        let mut c = file.clone();
        let i = pos.index(c.len());
        c[i] ^= x;
        prop_assert!(Manifest::from_file_bytes(&c).is_err());
        prop_assert!(Manifest::decode_any(&c).is_err());
        let n = cut.index(file.len());
        prop_assert!(Manifest::from_file_bytes(&file[..n]).is_err());
    }

    #[test]
    fn garbage_is_rejected(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        prop_assert!(Manifest::decode_any(&bytes).is_err());
        let mut with_header = FILE_MAGIC.to_vec();
        with_header.push(MANIFEST_VERSION);
        with_header.extend_from_slice(&bytes);
        prop_assert!(Manifest::from_file_bytes(&with_header).is_err());
        let t = format!("peas1{}", BASE32_NOPAD.encode(&with_header).to_ascii_lowercase());
        prop_assert!(Manifest::from_ticket(&t).is_err());
    }

    #[test]
    fn garbage_text_is_rejected(s in "\\PC{0,300}") {
        prop_assert!(Manifest::decode_any(s.as_bytes()).is_err());
        let t = format!("peas1{}", s);
        prop_assert!(Manifest::from_ticket(&t).is_err());
    }
}

#[test]
fn owner_and_address_encoding_matches_the_spec() {
    let o = Owner {
        id: NodeId([7; 32]),
        addrs: vec!["1.2.3.4:300".parse().unwrap(), "[::1]:5".parse().unwrap()],
        relay: Some("ab".into()),
    };
    let mut want = vec![7u8; 32];
    want.push(2); // two addresses
    want.extend_from_slice(&[0, 1, 2, 3, 4, 0xac, 0x02]); // V4, octets, port 300 as varint
    want.push(1); // V6
    want.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    want.push(5); // port
    want.extend_from_slice(&[1, 2, b'a', b'b']); // Some, len 2, "ab"
    assert_eq!(postcard::to_stdvec(&o).unwrap(), want);
}
