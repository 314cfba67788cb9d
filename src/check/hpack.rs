//! HPACK (RFC 7541), as far as one gRPC call needs it: a decoder for the
//! header blocks a server sends (static and dynamic table, table size
//! updates, Huffman strings), and literal fields for the request.
//!
//! The decoder must not let a header block make it hold more than the
//! bound it is given: an indexed field of one byte can name a 4 KiB table
//! entry, so the decoded list is bounded, not only the block. Our encoder
//! never indexes and never Huffman-codes: the request is small, and a
//! literal is always valid.

/// RFC 7541 Appendix A: the static table, one entry a line (index 1 is
/// the first), the name and its value (if any) after the first space. A
/// string, not a table of pairs: 2 KiB less of binary.
const STATIC: &str = "\
:authority\n\
:method GET\n\
:method POST\n\
:path /\n\
:path /index.html\n\
:scheme http\n\
:scheme https\n\
:status 200\n\
:status 204\n\
:status 206\n\
:status 304\n\
:status 400\n\
:status 404\n\
:status 500\n\
accept-charset\n\
accept-encoding gzip, deflate\n\
accept-language\n\
accept-ranges\n\
accept\n\
access-control-allow-origin\n\
age\n\
allow\n\
authorization\n\
cache-control\n\
content-disposition\n\
content-encoding\n\
content-language\n\
content-length\n\
content-location\n\
content-range\n\
content-type\n\
cookie\n\
date\n\
etag\n\
expect\n\
expires\n\
from\n\
host\n\
if-match\n\
if-modified-since\n\
if-none-match\n\
if-range\n\
if-unmodified-since\n\
last-modified\n\
link\n\
location\n\
max-forwards\n\
proxy-authenticate\n\
proxy-authorization\n\
range\n\
referer\n\
refresh\n\
retry-after\n\
server\n\
set-cookie\n\
strict-transport-security\n\
transfer-encoding\n\
user-agent\n\
vary\n\
via\n\
www-authenticate\n";
const STATIC_LEN: usize = 61;

/// Static table indexes the request uses.
pub const METHOD_POST: usize = 3;
pub const SCHEME_HTTP: usize = 6;
pub const SCHEME_HTTPS: usize = 7;
pub const AUTHORITY: usize = 1;
pub const PATH: usize = 4;
pub const CONTENT_TYPE: usize = 31;
pub const USER_AGENT: usize = 58;

/// The dynamic table's size that we announce (SETTINGS_HEADER_TABLE_SIZE:
/// we keep the default), so the most a server may make us keep.
pub const TABLE_SIZE: usize = 4096;

/// A decoded field: name and value, as bytes (they need not be UTF-8).
pub type Field = (Vec<u8>, Vec<u8>);

/// The decoding side of one connection: its dynamic table lives as long as
/// the connection, across header blocks.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Newest first, as the table's indexes count.
    table: Vec<Field>,
    /// The size of the entries (RFC 7541 4.1: name, value and 32 each).
    size: usize,
    /// The largest size the server has chosen (at most `TABLE_SIZE`).
    capacity: usize,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            capacity: TABLE_SIZE,
            ..Decoder::default()
        }
    }

    /// The fields of one whole header block, or why it is malformed. The
    /// list's size (counted as for the table) stays within `limit`.
    pub fn decode(&mut self, block: &[u8], limit: usize) -> Result<Vec<Field>, String> {
        let mut fields = Vec::new();
        let mut listed = 0usize;
        let mut at = 0;
        while at < block.len() {
            let first = block[at];
            let field = if first & 0x80 != 0 {
                // Indexed field.
                let index = integer(block, &mut at, 7)?;
                self.entry(index)?
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update: only before the first field.
                let size = integer(block, &mut at, 5)?;
                if !fields.is_empty() {
                    return Err("table size update after a field".into());
                }
                if size > TABLE_SIZE {
                    return Err(format!("table size update to {size}, over {TABLE_SIZE}"));
                }
                self.capacity = size;
                self.evict(0);
                continue;
            } else {
                // A literal: with incremental indexing (01), without (0000)
                // or never indexed (0001).
                let indexing = first & 0x40 != 0;
                let index = integer(block, &mut at, if indexing { 6 } else { 4 })?;
                let name = if index == 0 {
                    string(block, &mut at, limit)?
                } else {
                    self.entry(index)?.0
                };
                let value = string(block, &mut at, limit)?;
                if indexing {
                    self.insert(name.clone(), value.clone());
                }
                (name, value)
            };
            listed += field.0.len() + field.1.len() + 32;
            if listed > limit {
                return Err(format!("header list over {} KiB", limit / 1024));
            }
            fields.push(field);
        }
        Ok(fields)
    }

    /// The dynamic table's size (RFC 7541 4.1).
    pub fn table_size(&self) -> usize {
        self.size
    }

    fn entry(&self, index: usize) -> Result<Field, String> {
        if index == 0 {
            return Err("index 0".into());
        }
        if index <= STATIC_LEN {
            let line = STATIC.lines().nth(index - 1).expect("61 lines");
            let (name, value) = line.split_once(' ').unwrap_or((line, ""));
            return Ok((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
        self.table
            .get(index - STATIC_LEN - 1)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "index {index} past the table's {}",
                    STATIC_LEN + self.table.len()
                )
            })
    }

    /// RFC 7541 4.4: an entry larger than the table empties it.
    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let size = name.len() + value.len() + 32;
        self.evict(size);
        if size <= self.capacity {
            self.size += size;
            self.table.insert(0, (name, value));
        }
    }

    /// Drops the oldest entries until `room` more fits.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.capacity {
            let Some((name, value)) = self.table.pop() else {
                break;
            };
            self.size -= name.len() + value.len() + 32;
        }
    }
}

/// RFC 7541 5.1: an integer with an `prefix`-bit prefix at `block[*at]`.
fn integer(block: &[u8], at: &mut usize, prefix: u32) -> Result<usize, String> {
    let max = (1usize << prefix) - 1;
    let truncated = || "truncated integer".to_string();
    let mut value = *block.get(*at).ok_or_else(truncated)? as usize & max;
    *at += 1;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let byte = *block.get(*at).ok_or_else(truncated)?;
        *at += 1;
        value += ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 21 {
            return Err("integer over 2^28".into());
        }
    }
}

/// RFC 7541 5.2: a string literal, Huffman-coded or not; its decoded
/// length stays within `limit`.
fn string(block: &[u8], at: &mut usize, limit: usize) -> Result<Vec<u8>, String> {
    let huffman = block.get(*at).is_some_and(|b| b & 0x80 != 0);
    let length = integer(block, at, 7)?;
    let Some(bytes) = block.get(*at..).and_then(|rest| rest.get(..length)) else {
        return Err("string longer than the block".into());
    };
    *at += length;
    if huffman {
        huffman_decode(bytes, limit)
    } else {
        Ok(bytes.to_vec())
    }
}

/// RFC 7541 Appendix B, the code's length in bits for each symbol (256 is
/// EOS). The code is canonical: codes of one length are consecutive, in
/// symbol order, after all shorter ones. So the lengths are the whole
/// table, and the codes follow from them (`CANONICAL`).
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // ' '
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // '0'
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // '@'
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 'P'
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // '`'
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 'p'
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240
    30, // EOS
];

/// The canonical code, for decoding: for each length, the first code of
/// that length, how many codes have it, and where its symbols start in
/// the symbols sorted by (length, symbol).
struct Canonical {
    first: [u32; 31],
    count: [u16; 31],
    start: [u16; 31],
    symbols: [u8; 257],
}

const CANONICAL: Canonical = {
    let mut count = [0u16; 31];
    let mut i = 0;
    while i < 257 {
        count[LENGTHS[i] as usize] += 1;
        i += 1;
    }
    let mut first = [0u32; 31];
    let mut start = [0u16; 31];
    let mut code = 0u32;
    let mut sorted = 0u16;
    let mut length = 1;
    while length < 31 {
        first[length] = code;
        start[length] = sorted;
        code = (code + count[length] as u32) << 1;
        sorted += count[length];
        length += 1;
    }
    let mut symbols = [0u8; 257];
    let mut next = start;
    let mut symbol = 0;
    while symbol < 257 {
        let length = LENGTHS[symbol] as usize;
        symbols[next[length] as usize] = symbol as u8; // EOS (256): see `EOS_RANK`
        next[length] += 1;
        symbol += 1;
    }
    Canonical {
        first,
        count,
        start,
        symbols,
    }
};

/// Where EOS sorts: last of all, as its code is the longest, all ones.
const EOS_RANK: usize = 256;

/// RFC 7541 5.2: a Huffman-coded string, at most `limit` bytes decoded.
/// Padding must be fewer than 8 bits, all ones (EOS's first bits); EOS
/// itself in the string is an error.
pub fn huffman_decode(bytes: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let table = &CANONICAL;
    let mut out = Vec::with_capacity((bytes.len() * 8 / 5).min(limit));
    let mut code = 0u32;
    let mut length = 0usize;
    for byte in bytes {
        for bit in (0..8).rev() {
            code = code << 1 | u32::from(byte >> bit & 1);
            length += 1;
            if length > 30 {
                return Err("bad Huffman code".into());
            }
            let offset = code.wrapping_sub(table.first[length]);
            if offset < u32::from(table.count[length]) {
                let rank = table.start[length] as usize + offset as usize;
                if rank == EOS_RANK {
                    return Err("EOS in a Huffman string".into());
                }
                if out.len() == limit {
                    return Err(format!("string over {} KiB", limit / 1024));
                }
                out.push(table.symbols[rank]);
                code = 0;
                length = 0;
            }
        }
    }
    if length > 7 || code != (1 << length) - 1 {
        return Err("bad Huffman padding".into());
    }
    Ok(out)
}

/// Appends a literal field without indexing (RFC 7541 6.2.2), its name
/// from the static table (`name_index`) or, with 0, `name` itself.
pub fn literal(out: &mut Vec<u8>, name_index: usize, name: &str, value: &str) {
    put_integer(out, 0x00, 4, name_index);
    if name_index == 0 {
        put_integer(out, 0x00, 7, name.len());
        out.extend_from_slice(name.as_bytes());
    }
    put_integer(out, 0x00, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

/// Appends an indexed field (RFC 7541 6.1): a whole static entry.
pub fn indexed(out: &mut Vec<u8>, index: usize) {
    put_integer(out, 0x80, 7, index);
}

/// RFC 7541 5.1: `value` with a `prefix`-bit prefix, under `flags`.
fn put_integer(out: &mut Vec<u8>, flags: u8, prefix: u32, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn fields(list: &[Field]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| {
                (
                    String::from_utf8(n.clone()).unwrap(),
                    String::from_utf8(v.clone()).unwrap(),
                )
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// A table's entries, newest first, and its size.
    fn table(decoder: &Decoder) -> (Vec<(String, String)>, usize) {
        (fields(&decoder.table), decoder.size)
    }

    #[test]
    fn codes_follow_from_the_lengths_as_appendix_b_gives_them() {
        // A few codes from RFC 7541 Appendix B, as (symbol, code, bits).
        let code_of = |symbol: u16| {
            let length = LENGTHS[symbol as usize] as usize;
            let t = &CANONICAL;
            let rank = (t.start[length]..t.start[length] + t.count[length])
                .position(|i| {
                    let i = i as usize;
                    if i == EOS_RANK {
                        symbol == 256
                    } else {
                        u16::from(t.symbols[i]) == symbol && symbol != 256
                    }
                })
                .unwrap();
            (t.first[length] + rank as u32, length)
        };
        for (symbol, code, bits) in [
            (b'0' as u16, 0x0, 5),
            (b' ' as u16, 0x14, 6),
            (b'a' as u16, 0x3, 5),
            (b':' as u16, 0x5c, 7),
            (b'&' as u16, 0xf8, 8),
            (0, 0x1ff8, 13),
            (1, 0x7fffd8, 23),
            (b'\n' as u16, 0x3ffffffc, 30),
            (255, 0x3ffffee, 26),
            (256, 0x3fffffff, 30),
        ] {
            assert_eq!(code_of(symbol), (code, bits), "symbol {symbol}");
        }
        // A complete code: the last code of 30 bits is all ones (EOS).
        assert_eq!(
            CANONICAL.first[30] + u32::from(CANONICAL.count[30]),
            1 << 30
        );
    }

    #[test]
    fn huffman_strings_of_appendix_c4_and_c6() {
        for (coded, plain) in [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("25a8 49e9 5ba9 7d7f", "custom-key"),
            ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
            ("6402", "302"),
            ("aec3 771a 4b", "private"),
            (
                "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
            (
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
                "https://www.example.com",
            ),
            ("9bd9 ab", "gzip"),
        ] {
            assert_eq!(huffman_decode(&hex(coded), 4096).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn bad_huffman_strings_fail() {
        // Padding of 8 bits or more, padding with a zero, EOS coded.
        assert!(huffman_decode(&hex("ff"), 100).is_err());
        assert!(huffman_decode(&hex("f1e3 c2e5 f23a 6ba0 ab90 f4fe"), 100).is_err());
        assert!(huffman_decode(&hex("ffff fffc"), 100).is_err());
        // Decoded length is bounded.
        assert!(huffman_decode(&hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"), 14).is_err());
        assert!(huffman_decode(&[], 0).unwrap().is_empty());
    }

    /// RFC 7541 C.3 (requests without Huffman) and C.4 (with): the same
    /// fields and tables.
    #[test]
    fn requests_of_appendix_c3_and_c4() {
        for blocks in [
            [
                "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                "8286 84be 5808 6e6f 2d63 6163 6865",
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            ],
            [
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                "8286 84be 5886 a8eb 1064 9cbf",
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ],
        ] {
            let mut d = Decoder::new();
            let got = d.decode(&hex(blocks[0]), 16384).unwrap();
            assert_eq!(
                fields(&got),
                pairs(&[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":authority", "www.example.com")
                ])
            );
            assert_eq!(table(&d), (pairs(&[(":authority", "www.example.com")]), 57));
            let got = d.decode(&hex(blocks[1]), 16384).unwrap();
            assert_eq!(
                fields(&got),
                pairs(&[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":authority", "www.example.com"),
                    ("cache-control", "no-cache")
                ])
            );
            assert_eq!(d.size, 110);
            let got = d.decode(&hex(blocks[2]), 16384).unwrap();
            assert_eq!(
                fields(&got),
                pairs(&[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":path", "/index.html"),
                    (":authority", "www.example.com"),
                    ("custom-key", "custom-value")
                ])
            );
            assert_eq!(
                table(&d),
                (
                    pairs(&[
                        ("custom-key", "custom-value"),
                        ("cache-control", "no-cache"),
                        (":authority", "www.example.com")
                    ]),
                    164
                )
            );
        }
    }

    /// RFC 7541 C.5 (responses without Huffman) and C.6 (with), with the
    /// table's size set to 256 as the examples do: entries are evicted.
    #[test]
    fn responses_of_appendix_c5_and_c6_evict() {
        for blocks in [
            [
                "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
                 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
                 6c65 2e63 6f6d",
                "4803 3330 37c1 c0bf",
                "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d \
                 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 \
                 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e \
                 3d31",
            ],
            [
                "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 \
                 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                "4883 640e ffc1 c0bf",
                "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab \
                 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f \
                 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            ],
        ] {
            let mut d = Decoder::new();
            d.capacity = 256;
            let got = d.decode(&hex(blocks[0]), 16384).unwrap();
            assert_eq!(
                fields(&got),
                pairs(&[
                    (":status", "302"),
                    ("cache-control", "private"),
                    ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                    ("location", "https://www.example.com")
                ])
            );
            assert_eq!(d.size, 222);
            let got = d.decode(&hex(blocks[1]), 16384).unwrap();
            assert_eq!(fields(&got)[0], (":status".into(), "307".into()));
            assert_eq!(d.size, 222);
            assert_eq!(d.table[0].1, b"307");
            let got = d.decode(&hex(blocks[2]), 16384).unwrap();
            assert_eq!(
                fields(&got),
                pairs(&[
                    (":status", "200"),
                    ("cache-control", "private"),
                    ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                    ("location", "https://www.example.com"),
                    ("content-encoding", "gzip"),
                    (
                        "set-cookie",
                        "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
                    )
                ])
            );
            assert_eq!(
                table(&d),
                (
                    pairs(&[
                        (
                            "set-cookie",
                            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
                        ),
                        ("content-encoding", "gzip"),
                        ("date", "Mon, 21 Oct 2013 20:13:22 GMT")
                    ]),
                    215
                )
            );
        }
    }

    #[test]
    fn size_updates_and_bounds() {
        let mut d = Decoder::new();
        // Add an entry, then shrink the table to 0 and back: it is gone.
        d.decode(
            &hex("400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"),
            1000,
        )
        .unwrap();
        assert_eq!(d.size, 54);
        assert!(
            d.decode(&hex("20 3fe1 1f be"), 1000).is_err(),
            "index 62 after the update"
        );
        assert_eq!(d.size, 0);
        // An update over our 4096, or after a field, is an error.
        assert!(d.decode(&hex("3fe2 1f"), 1000).is_err());
        assert!(d.decode(&hex("82 20"), 1000).is_err());
        // Index 0, an index past the table, a truncated string or integer.
        for bad in ["80", "c0", "4005 6162", "ff", "0f"] {
            assert!(Decoder::new().decode(&hex(bad), 1000).is_err(), "{bad}");
        }
        // One entry of 1000 bytes, then many one-byte references to it:
        // the list is bounded, not only the block.
        let mut block = vec![0x40, 1, b'x', 0x7f, 0xe9, 0x06]; // value of 1000 bytes
        block.extend(std::iter::repeat_n(b'v', 1000));
        block.extend(std::iter::repeat_n(0xbe, 20));
        let e = Decoder::new().decode(&block, 16384).unwrap_err();
        assert_eq!(e, "header list over 16 KiB");
        // An entry larger than the whole table empties it.
        let mut d = Decoder::new();
        d.capacity = 40;
        d.decode(&hex("4001 6101 62"), 1000).unwrap();
        assert_eq!(d.size, 34);
        d.decode(&hex("4001 6102 6263"), 1000).unwrap();
        assert_eq!(d.size, 35);
        d.decode(
            &hex("4001 6110 3031 3233 3435 3637 3839 3031 3233 3435"),
            1000,
        )
        .unwrap();
        assert_eq!(table(&d), (vec![], 0));
    }

    #[test]
    fn literals_decode_to_what_was_encoded() {
        let mut block = Vec::new();
        indexed(&mut block, METHOD_POST);
        literal(&mut block, PATH, "", "/grpc.health.v1.Health/Check");
        literal(&mut block, 0, "grpc-timeout", "999m");
        let long = "x".repeat(300);
        literal(&mut block, USER_AGENT, "", &long);
        let got = Decoder::new().decode(&block, 16384).unwrap();
        assert_eq!(
            fields(&got),
            pairs(&[
                (":method", "POST"),
                (":path", "/grpc.health.v1.Health/Check"),
                ("grpc-timeout", "999m"),
                ("user-agent", &long)
            ])
        );
    }
}
