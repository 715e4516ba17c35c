//! proxy-wasm's serialized header map (what the host answers to `proxy_get_header_map_pairs`), read in place:
//! a little-endian `u32` count, then per pair the `u32` lengths of its name and value, then every name and
//! value in order, each followed by a NUL byte. The host adapter keeps the buffer and the core reads borrowed
//! slices of it (issue 17: no `String` per header).

use std::ops::Range;

/// Where one name or value lies in the buffer.
pub type Span = Range<usize>;

/// The `(name, value)` spans of every pair of `raw`, in order; `None` when `raw` is not such a map (a length
/// past the end, a missing NUL, or a count the buffer cannot hold).
pub fn spans(raw: &[u8]) -> Option<Vec<(Span, Span)>> {
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = raw.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = word(0)?;
    let mut at = count.checked_mul(8)?.checked_add(4)?;
    if at > raw.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let lengths = 4 + i * 8; // < at ≤ raw.len(): no overflow
        let name = at..at.checked_add(word(lengths)?)?;
        let value_at = name.end.checked_add(1)?;
        let value = value_at..value_at.checked_add(word(lengths + 4)?)?;
        if raw.get(name.end) != Some(&0) || raw.get(value.end) != Some(&0) {
            return None;
        }
        at = value.end + 1;
        out.push((name, value));
    }
    Some(out)
}

/// The serialized form of `pairs` (what a host sends; for the tests and `examples/decide_cost.rs`).
pub fn serialize(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = len(pairs.len()).to_vec();
    for (n, v) in pairs {
        out.extend_from_slice(&len(n.len()));
        out.extend_from_slice(&len(v.len()));
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_a_host_writes() {
        let raw = serialize(&[
            (":method", b"GET"),
            ("x-empty", b""),
            ("authorization", b"Bearer t"),
        ]);
        let got: Vec<(&[u8], &[u8])> = spans(&raw)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (&raw[n], &raw[v]))
            .collect();
        assert_eq!(
            got,
            [
                (&b":method"[..], &b"GET"[..]),
                (b"x-empty", b""),
                (b"authorization", b"Bearer t")
            ]
        );
        assert_eq!(spans(&serialize(&[])).unwrap(), []);
    }

    #[test]
    fn refuses_a_map_that_does_not_add_up() {
        let raw = serialize(&[("a", b"1"), ("b", b"2")]);
        assert!(spans(&raw[..raw.len() - 1]).is_none(), "last NUL missing");
        let mut long = raw.clone();
        long[4] = 200; // the first name runs past the end
        assert!(spans(&long).is_none());
        let mut nul = raw.clone();
        let first_nul = 4 + 2 * 8 + 1;
        nul[first_nul] = b'x';
        assert!(spans(&nul).is_none(), "a name without its NUL");
        assert!(
            spans(&[0xff, 0xff, 0xff, 0xff]).is_none(),
            "a count the buffer cannot hold"
        );
        assert!(spans(&[]).is_none());
    }
}
