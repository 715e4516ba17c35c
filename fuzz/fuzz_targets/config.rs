//! Config compilation: any bytes in, a policy or an error with a path out, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = trustgate::policy::config::compile(data);
});
