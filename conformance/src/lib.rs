//! Protocol-v2 conformance suite. Not built yet: it lands with the
//! conformance issue, on top of `sdk::host`.
