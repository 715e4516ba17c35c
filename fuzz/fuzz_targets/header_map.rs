//! proxy-wasm's serialized header map, as the host adapter reads it in place: no panic on any buffer, and
//! every span it returns lies inside the buffer.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(spans) = trustgate::formats::header_map::spans(data) {
        for (n, v) in spans {
            assert!(n.end <= data.len() && v.end <= data.len() && n.start <= n.end && v.start <= v.end);
        }
    }
});
