//! ClassBench rule sets, traces and expected results, run through the classifier.
//!
//! Formats (see `shared/classbench/README.md`): rule lines
//! `@SRC/LEN<TAB>DST/LEN<TAB>LO : HI<TAB>LO : HI<TAB>PROTO/MASK<TAB>FLAGS/MASK`,
//! trace lines `SRC DST SPORT DPORT PROTO FLAGS GEN_RULE` (decimal, tab
//! separated), expected lines one signed rule id (`-1` = no match). Files may
//! be plain or gzip (detected by the magic bytes). Nothing here prints.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::compile::classifier::{
    Classifier, ClassifierRule, LinearClassifier, PacketKey, NO_MATCH,
};

/// Why a ClassBench file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not UTF-8 text")]
    NotText { path: PathBuf },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        message: String,
    },
    #[error("trace has {trace} lines but the expected file has {expected}")]
    LengthMismatch { trace: usize, expected: usize },
}

/// One trace line: the key and the rule the header was generated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceEntry {
    pub key: PacketKey<u32>,
    pub generating_rule: Option<u32>,
}

/// A trace line whose answer differs from the expected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// 1-based trace line.
    pub line: usize,
    pub expected: Option<u32>,
    pub got: Option<u32>,
}

/// Outcome of [`run`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassbenchReport {
    pub rules: usize,
    /// Trace lines classified (per repetition).
    pub lookups: usize,
    pub mismatches: usize,
    /// At most [`MAX_REPORTED_MISMATCHES`].
    pub first_mismatches: Vec<Mismatch>,
    pub build_ms: f64,
    /// Batched lookups per second (best repetition).
    pub lookups_per_sec: f64,
    /// One-at-a-time `classify` lookups per second (best repetition).
    pub single_lookups_per_sec: f64,
    pub table_bytes: u64,
    pub bytes_per_rule: f64,
}

pub const MAX_REPORTED_MISMATCHES: usize = 20;

/// Measurement knobs of [`run_with`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Keep repeating the trace until this much time has been spent.
    pub min_seconds: f64,
    /// ... and at least this many repetitions.
    pub min_repetitions: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            min_seconds: 0.5,
            min_repetitions: 3,
        }
    }
}

/// Reads a file, gunzipping it when it starts with the gzip magic bytes.
pub fn read_text(path: &Path) -> Result<String, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(io)?;
        out
    } else {
        raw
    };
    String::from_utf8(bytes).map_err(|_| Error::NotText {
        path: path.to_path_buf(),
    })
}

fn parse_err(path: &Path, line: usize, message: impl Into<String>) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// `a.b.c.d/len` as an inclusive range.
fn parse_prefix(s: &str) -> Result<(u32, u32), String> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| format!("address {s:?} lacks /LEN"))?;
    let addr: std::net::Ipv4Addr = addr
        .trim()
        .parse()
        .map_err(|_| format!("bad IPv4 address {addr:?}"))?;
    let len: u32 = len
        .trim()
        .parse()
        .map_err(|_| format!("bad prefix length {len:?}"))?;
    if len > 32 {
        return Err(format!("prefix length {len} > 32"));
    }
    let host = u32::MAX.checked_shr(len).unwrap_or(0);
    let lo = u32::from(addr) & !host;
    Ok((lo, lo | host))
}

fn parse_port_range(s: &str) -> Result<(u32, u32), String> {
    let (lo, hi) = s
        .split_once(':')
        .ok_or_else(|| format!("port range {s:?} lacks ':'"))?;
    let p = |x: &str| -> Result<u32, String> {
        let v: u32 = x.trim().parse().map_err(|_| format!("bad port {x:?}"))?;
        if v > 65535 {
            return Err(format!("port {v} > 65535"));
        }
        Ok(v)
    };
    let (lo, hi) = (p(lo)?, p(hi)?);
    if lo > hi {
        return Err(format!("port range {lo} : {hi} is empty"));
    }
    Ok((lo, hi))
}

fn parse_hex_u8(s: &str) -> Result<u8, String> {
    let t = s.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    u8::from_str_radix(digits, 16).map_err(|_| format!("bad hex byte {s:?}"))
}

fn parse_protocol(s: &str) -> Result<Option<u8>, String> {
    let (v, m) = s
        .split_once('/')
        .ok_or_else(|| format!("protocol {s:?} lacks /MASK"))?;
    let (v, m) = (parse_hex_u8(v)?, parse_hex_u8(m)?);
    match m {
        0x00 => Ok(None),
        0xFF => Ok(Some(v)),
        _ => Err(format!("protocol mask {m:#04x} is neither 0x00 nor 0xFF")),
    }
}

/// Parses a rule file's text; rule id = 0-based line number. `path` is only
/// used in error messages.
pub fn parse_rules(text: &str, path: &Path) -> Result<Vec<ClassifierRule<u32>>, Error> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let no = i + 1;
        if line.trim().is_empty() {
            return Err(parse_err(path, no, "empty rule line"));
        }
        let line = line
            .trim_start()
            .strip_prefix('@')
            .ok_or_else(|| parse_err(path, no, "rule does not start with '@'"))?;
        let fields: Vec<&str> = line
            .split('\t')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .collect();
        if fields.len() < 5 {
            return Err(parse_err(
                path,
                no,
                format!(
                    "expected at least 5 tab-separated fields, got {}",
                    fields.len()
                ),
            ));
        }
        let e = |m: String| parse_err(path, no, m);
        out.push(ClassifierRule {
            source: parse_prefix(fields[0]).map_err(e)?,
            destination: parse_prefix(fields[1]).map_err(e)?,
            source_port: parse_port_range(fields[2]).map_err(e)?,
            destination_port: parse_port_range(fields[3]).map_err(e)?,
            protocol: parse_protocol(fields[4]).map_err(e)?,
            id: u32::try_from(i).map_err(|_| parse_err(path, no, "too many rules"))?,
        });
    }
    Ok(out)
}

/// Parses a trace file's text.
pub fn parse_trace(text: &str, path: &Path) -> Result<Vec<TraceEntry>, Error> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let no = i + 1;
        let mut nums = [0u64; 7];
        let mut n = 0;
        for tok in line.split_whitespace() {
            if n == 7 {
                return Err(parse_err(path, no, "more than 7 fields"));
            }
            nums[n] = tok
                .parse()
                .map_err(|_| parse_err(path, no, format!("bad number {tok:?}")))?;
            n += 1;
        }
        if n < 5 {
            return Err(parse_err(
                path,
                no,
                format!("expected at least 5 fields, got {n}"),
            ));
        }
        let bounded = |v: u64, max: u64, what: &str| -> Result<u64, Error> {
            if v > max {
                Err(parse_err(path, no, format!("{what} {v} out of range")))
            } else {
                Ok(v)
            }
        };
        let key = PacketKey {
            source: bounded(nums[0], u64::from(u32::MAX), "source address")? as u32,
            destination: bounded(nums[1], u64::from(u32::MAX), "destination address")? as u32,
            source_port: bounded(nums[2], 65535, "source port")? as u32,
            destination_port: bounded(nums[3], 65535, "destination port")? as u32,
            protocol: bounded(nums[4], 255, "protocol")? as u8,
        };
        let generating_rule = if n == 7 {
            Some(bounded(nums[6], u64::from(u32::MAX), "generating rule")? as u32)
        } else {
            None
        };
        out.push(TraceEntry {
            key,
            generating_rule,
        });
    }
    Ok(out)
}

/// Parses an expected file's text: `None` for `-1`.
pub fn parse_expected(text: &str, path: &Path) -> Result<Vec<Option<u32>>, Error> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let v: i64 = line
                .trim()
                .parse()
                .map_err(|_| parse_err(path, i + 1, format!("bad rule id {line:?}")))?;
            match v {
                -1 => Ok(None),
                v => u32::try_from(v)
                    .ok()
                    .filter(|&v| v != NO_MATCH)
                    .map(Some)
                    .ok_or_else(|| parse_err(path, i + 1, format!("rule id {v} out of range"))),
            }
        })
        .collect()
}

pub fn read_rules(path: &Path) -> Result<Vec<ClassifierRule<u32>>, Error> {
    parse_rules(&read_text(path)?, path)
}

pub fn read_trace(path: &Path) -> Result<Vec<TraceEntry>, Error> {
    parse_trace(&read_text(path)?, path)
}

pub fn read_expected(path: &Path) -> Result<Vec<Option<u32>>, Error> {
    parse_expected(&read_text(path)?, path)
}

/// Rules, trace keys and expected answers of one set.
type Loaded = (
    Vec<ClassifierRule<u32>>,
    Vec<PacketKey<u32>>,
    Vec<Option<u32>>,
);

fn load(rules_path: &Path, trace_path: &Path, expected_path: &Path) -> Result<Loaded, Error> {
    let rules = read_rules(rules_path)?;
    let keys: Vec<PacketKey<u32>> = read_trace(trace_path)?.iter().map(|t| t.key).collect();
    let expected = read_expected(expected_path)?;
    if keys.len() != expected.len() {
        return Err(Error::LengthMismatch {
            trace: keys.len(),
            expected: expected.len(),
        });
    }
    Ok((rules, keys, expected))
}

fn compare(got: &[u32], expected: &[Option<u32>]) -> (usize, Vec<Mismatch>) {
    let mut count = 0;
    let mut first = Vec::new();
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let g = (g != NO_MATCH).then_some(g);
        if g != e {
            count += 1;
            if first.len() < MAX_REPORTED_MISMATCHES {
                first.push(Mismatch {
                    line: i + 1,
                    expected: e,
                    got: g,
                });
            }
        }
    }
    (count, first)
}

/// Repeats `f` (which performs `per_rep` lookups) until the time and
/// repetition minimums are met; the best repetition's lookups per second.
fn measure(opts: &RunOptions, per_rep: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut reps = 0;
    while reps < opts.min_repetitions.max(1) || start.elapsed().as_secs_f64() < opts.min_seconds {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        reps += 1;
    }
    if best > 0.0 {
        per_rep as f64 / best
    } else {
        0.0
    }
}

/// Builds the classifier from `rules_path`, classifies the trace (batched and
/// one at a time, repeated for at least ~0.5 s) and checks it against the
/// expected file.
pub fn run(
    rules_path: &Path,
    trace_path: &Path,
    expected_path: &Path,
) -> Result<ClassbenchReport, Error> {
    run_with(
        rules_path,
        trace_path,
        expected_path,
        &RunOptions::default(),
    )
}

/// [`run`] with explicit measurement options.
pub fn run_with(
    rules_path: &Path,
    trace_path: &Path,
    expected_path: &Path,
    opts: &RunOptions,
) -> Result<ClassbenchReport, Error> {
    let (rules, keys, expected) = load(rules_path, trace_path, expected_path)?;
    let t = Instant::now();
    let classifier = Classifier::build(&rules);
    let build_ms = t.elapsed().as_secs_f64() * 1e3;

    let mut out = vec![NO_MATCH; keys.len()];
    classifier.classify_batch(&keys, &mut out);
    let (mismatches, first_mismatches) = compare(&out, &expected);
    let lookups_per_sec = measure(opts, keys.len(), || {
        classifier.classify_batch(std::hint::black_box(&keys), &mut out);
        std::hint::black_box(&out);
    });
    let half = RunOptions {
        min_seconds: opts.min_seconds / 2.0,
        ..opts.clone()
    };
    let single_lookups_per_sec = measure(&half, keys.len(), || {
        for (k, o) in std::hint::black_box(&keys).iter().zip(out.iter_mut()) {
            *o = classifier.classify(k).unwrap_or(NO_MATCH);
        }
        std::hint::black_box(&out);
    });
    let table_bytes = classifier.table_bytes() as u64;
    Ok(ClassbenchReport {
        rules: rules.len(),
        lookups: keys.len(),
        mismatches,
        first_mismatches,
        build_ms,
        lookups_per_sec,
        single_lookups_per_sec,
        table_bytes,
        bytes_per_rule: table_bytes as f64 / rules.len().max(1) as f64,
    })
}

/// The baseline: a first-match linear scan over the same files. Classifies a
/// prefix of the trace for about `opts.min_seconds` (a full 100k × 500k scan
/// would take hours); `lookups` is the number of trace lines done.
pub fn run_linear_baseline(
    rules_path: &Path,
    trace_path: &Path,
    expected_path: &Path,
    opts: &RunOptions,
) -> Result<ClassbenchReport, Error> {
    let (rules, keys, expected) = load(rules_path, trace_path, expected_path)?;
    let t = Instant::now();
    let linear = LinearClassifier::build(&rules);
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut out = vec![NO_MATCH; keys.len()];
    let start = Instant::now();
    let mut done = 0;
    for (kc, oc) in keys.chunks(256).zip(out.chunks_mut(256)) {
        linear.classify_batch(kc, oc);
        done += kc.len();
        if start.elapsed().as_secs_f64() >= opts.min_seconds {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let (mismatches, first_mismatches) = compare(&out[..done], &expected[..done]);
    let table_bytes = (rules.len() * std::mem::size_of::<ClassifierRule<u32>>()) as u64;
    Ok(ClassbenchReport {
        rules: rules.len(),
        lookups: done,
        mismatches,
        first_mismatches,
        build_ms,
        lookups_per_sec: if secs > 0.0 { done as f64 / secs } else { 0.0 },
        single_lookups_per_sec: if secs > 0.0 { done as f64 / secs } else { 0.0 },
        table_bytes,
        bytes_per_rule: table_bytes as f64 / rules.len().max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rule_line() {
        let p = Path::new("x.rules");
        let r = parse_rules(
            "@192.26.178.240/28\t142.230.144.0/28\t53 : 53\t37 : 37\t0x11/0xFF\t0x0000/0x0000\t\n\
             @0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\t\n",
            p,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].source, (0xC01A_B2F0, 0xC01A_B2FF));
        assert_eq!(r[0].protocol, Some(0x11));
        assert_eq!(r[0].destination_port, (37, 37));
        assert_eq!(r[1].protocol, None);
        assert_eq!(r[1].source, (0, u32::MAX));
        assert_eq!(r[1].id, 1);
    }

    #[test]
    fn bad_lines_give_line_numbers() {
        let p = Path::new("x.rules");
        let good = "@1.2.3.4/32\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\t\n";
        for bad in [
            "1.2.3.4/32\t0.0.0.0/0\t0 : 1\t0 : 1\t0x00/0x00",
            "@1.2.3.4/33\t0.0.0.0/0\t0 : 1\t0 : 1\t0x00/0x00",
            "@1.2.3/32\t0.0.0.0/0\t0 : 1\t0 : 1\t0x00/0x00",
            "@1.2.3.4/32\t0.0.0.0/0\t5 : 1\t0 : 1\t0x00/0x00",
            "@1.2.3.4/32\t0.0.0.0/0\t0 : 1\t0 : 70000\t0x00/0x00",
            "@1.2.3.4/32\t0.0.0.0/0\t0 : 1\t0 : 1\t0x06/0x0F",
            "@1.2.3.4/32\t0.0.0.0/0\t0 : 1",
            "",
        ] {
            let text = format!("{good}{bad}\n");
            match parse_rules(&text, p) {
                Err(Error::Parse { line: 2, .. }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        match parse_trace("1\t2\t3\t4\t6\t0\t0\n1\t2\tx\t4\t6\n", Path::new("t")) {
            Err(Error::Parse { line: 2, .. }) => {}
            other => panic!("{other:?}"),
        }
        match parse_trace("1\t2\t3\t70000\t6\n", Path::new("t")) {
            Err(Error::Parse { line: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        match parse_expected("3\n-1\n-2\n", Path::new("e")) {
            Err(Error::Parse { line: 3, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_expected("3\n-1\n", Path::new("e")).unwrap(),
            vec![Some(3), None]
        );
    }

    #[test]
    fn gzip_and_plain_are_both_read() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("nsgd-cb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("e.txt");
        let gz = dir.join("e.gz");
        std::fs::write(&plain, "1\n2\n").unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"1\n2\n").unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        assert_eq!(read_expected(&plain).unwrap(), vec![Some(1), Some(2)]);
        assert_eq!(read_expected(&gz).unwrap(), vec![Some(1), Some(2)]);
        assert!(matches!(
            read_expected(&dir.join("missing")),
            Err(Error::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).ok();
    }
}
