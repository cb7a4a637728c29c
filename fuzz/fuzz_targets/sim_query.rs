//! tenant-sim's reading of a Graph query string (`$top`, `$select`, `$filter`,
//! `$search`, `$orderby`, `$count`), and the raw request line it percent-encodes before
//! hyper parses it. The first byte picks the part; the rest is the text.
//!
//! Properties: never panics or loops; a parsed `$filter` prints back (OData syntax) to a
//! filter that parses to an equal one; a rewritten request line is one line of bytes
//! hyper accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_sim::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick % 5 == 4 {
        if let Some(line) = fuzzing::rewrite_request_line(rest) {
            assert!(
                line.iter().all(|b| b.is_ascii_graphic() || *b == b' '),
                "a rewritten request line keeps bytes hyper refuses: {line:?}"
            );
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match pick % 5 {
        0 => {
            if let Ok(filter) = fuzzing::parse_filter(text) {
                let printed = filter.to_odata();
                let again = fuzzing::parse_filter(&printed).unwrap_or_else(|e| {
                    panic!("{printed:?} (printed from {text:?}) does not parse: {e}")
                });
                assert_eq!(filter, again, "{text:?} printed as {printed:?}");
                let _ = filter.is_advanced();
            }
        }
        1 => {
            let _ = fuzzing::parse_search(text);
        }
        2 => {
            let _ = fuzzing::order_by(text, false, false);
            let _ = fuzzing::order_by(text, true, true);
        }
        _ => {
            // A whole query string, as each endpoint reads it.
            let _ = fuzzing::parse_query(text);
        }
    }
});
