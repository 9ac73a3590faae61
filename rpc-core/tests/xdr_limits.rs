//! The reader's nesting limit: optionals and arrays count one level each, the limit is
//! configurable, and hitting it is an [`XdrError::DepthExceeded`], not a stack overflow.

use bytes::Bytes;
use rpc_core::xdr::{XdrDecode, XdrError, XdrReader, DEFAULT_MAX_DEPTH};

/// A hand-written recursive type: `struct List { List *next; }`.
#[derive(Debug)]
struct List(Option<Box<List>>);

impl XdrDecode for List {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        r.get_optional_with(|r| List::decode(r).map(Box::new))
            .map(List)
    }
}

impl Drop for List {
    fn drop(&mut self) {
        let mut next = self.0.take();
        while let Some(mut node) = next {
            next = node.0.take();
        }
    }
}

fn list_bytes(levels: usize) -> Bytes {
    let mut v: Vec<u8> = (0..levels).flat_map(|_| 1u32.to_be_bytes()).collect();
    v.extend_from_slice(&0u32.to_be_bytes());
    Bytes::from(v)
}

#[test]
fn default_limit_allows_exactly_its_depth() {
    let ok = list_bytes(DEFAULT_MAX_DEPTH as usize - 1);
    let mut r = XdrReader::new(&ok);
    List::decode(&mut r).unwrap();
    r.finish().unwrap();
    assert_eq!(r.depth(), 0, "every level is left again");

    let deep = list_bytes(DEFAULT_MAX_DEPTH as usize + 1);
    let e = List::decode(&mut XdrReader::new(&deep)).unwrap_err();
    assert_eq!(
        e,
        XdrError::DepthExceeded {
            limit: DEFAULT_MAX_DEPTH
        }
    );
}

#[test]
fn a_million_levels_fail_cleanly() {
    // 4 MB of `present` flags: without the limit this overflows any thread's stack.
    let deep = list_bytes(1_000_000);
    let e = rpc_core::xdr::from_bytes::<List>(&deep).unwrap_err();
    assert!(matches!(e, XdrError::DepthExceeded { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "values nested deeper than the limit of 256 levels"
    );
}

#[test]
fn arrays_count_and_the_limit_is_configurable() {
    // [[[7]]]: three arrays.
    let words: [u32; 4] = [1, 1, 1, 7];
    let bytes = Bytes::from(
        words
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect::<Vec<u8>>(),
    );
    let mut r = XdrReader::with_max_depth(&bytes, 2);
    assert_eq!(r.max_depth(), 2);
    let e = r.get::<Vec<Vec<Vec<i32>>>>().unwrap_err();
    assert_eq!(e, XdrError::DepthExceeded { limit: 2 });
    let mut r = XdrReader::with_max_depth(&bytes, 3);
    assert_eq!(r.get::<Vec<Vec<Vec<i32>>>>().unwrap(), vec![vec![vec![7]]]);
    // Fixed arrays count too.
    let mut r = XdrReader::with_max_depth(&bytes, 0);
    assert_eq!(
        r.get::<[i32; 1]>().unwrap_err(),
        XdrError::DepthExceeded { limit: 0 }
    );
}

#[test]
fn a_long_flat_array_is_one_level() {
    let n = 100_000u32;
    let mut v = n.to_be_bytes().to_vec();
    v.extend((0..n).flat_map(|i| i.to_be_bytes()));
    let got: Vec<u32> = rpc_core::xdr::from_bytes(&Bytes::from(v)).unwrap();
    assert_eq!(got.len(), n as usize);
}
