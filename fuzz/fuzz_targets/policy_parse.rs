//! Policy files are a trust boundary: any bytes, in either syntax, must give a
//! policy or errors, never a panic, a hang or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nsgd::policy::{parse_str, Format};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for format in [Format::Yaml, Format::Json] {
            if let Err(errors) = parse_str(text, format, "fuzz") {
                assert!(!errors.is_empty());
                let _ = errors.to_string();
            }
        }
    }
});
