//! The bytes Python's `json.dumps(obj, sort_keys=True)` writes, so that manifests signed
//! by ARK's Python federation service (which signed exactly those bytes) verify here.
//! Parsing the JSON is left to miniserde.
//!
//! # What is reproduced
//!
//! For a document `text`, [`python_json_dumps_sorted`] of `miniserde::json::from_str(text)`
//! equals `json.dumps(json.loads(text), sort_keys=True)`:
//!
//! - separators `", "` and `": "`, no newlines or indentation;
//! - `ensure_ascii=True`: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f` as short escapes, every
//!   other character outside 0x20..=0x7E (DEL included) as lowercase `\uXXXX`, characters
//!   beyond the BMP as a UTF-16 surrogate pair;
//! - object keys sorted by code point (miniserde's `BTreeMap` orders UTF-8 bytes, which
//!   is the same order); of duplicate keys the last wins, in both;
//! - integers as written, floats as Python's `repr`: the shortest digits that round-trip,
//!   fixed notation when the decimal exponent is in `-4..16` (`0.0001`, `1e+16` is not),
//!   else `1e-05` / `1.5e+300` with a sign and at least two exponent digits; integral
//!   floats keep `.0`; `-0.0` keeps its sign.
//!
//! # Where miniserde loses what Python keeps
//!
//! Manifests that peers sign are therefore read by `pyvalue`, which keeps all of the
//! following; this writer serves values built here (our own manifest).
//!
//! Python's `json.loads` keeps integers of any size and parses floats with correct
//! rounding; miniserde does neither, so these documents do *not* reproduce (a signature
//! over them fails to verify, it never verifies wrongly):
//!
//! - integers beyond `u64` (above 18446744073709551615) or below `i64::MIN` become
//!   floats: Python writes `18446744073709551616`, this writes `1.8446744073709552e+19`;
//! - floats are parsed as `digits as f64` multiplied or divided by one power of ten,
//!   dropping digits past the 19th or 20th. That is exact only when the digits without
//!   the point form an integer up to 2^53 and the decimal exponent is within ±22 (one
//!   rounding); otherwise the result may be one unit in the last place off Python's.
//!   `0.1`, `2.5`, `1e22`, `0.8333333333333334` are exact; `3e23` becomes
//!   `2.9999999999999997e+23`, and about a third of random 17-digit `repr` outputs
//!   (test `float_repr_matches_local_python3`) come out different;
//! - `NaN`, `Infinity`, `-Infinity` and overflowing literals such as `1e400` (Python
//!   reads them, writing `NaN` / `Infinity`) and lone surrogate escapes such as
//!   `"\ud800"` (Python keeps them) are rejected by miniserde, so never reach here.
//!
//! `-0` as an integer is `0` in both. A non-finite `F64` built in Rust is written as
//! Python would write it (`NaN`, `Infinity`, `-Infinity`).
//!
//! # Implementation
//!
//! One writer ([`dumps_sorted`]) serves miniserde's `Value` and `pyvalue::PyValue`
//! alike, through [`DumpsValue`]. It walks the value with an explicit stack rather than
//! recursion: miniserde
//! itself parses arbitrarily deep nesting without recursion, and a peer must not be able
//! to overflow our stack with `[[[[...]]]]`. The `/manifest` handler clones the value
//! first, which does recurse; that is safe because every body is read through
//! `model::parse_json`, which refuses nesting deeper than 128 (issue 10).

use std::collections::btree_map;
use std::fmt::Write;

use miniserde::json::{Number, Value};

/// `json.dumps(value, sort_keys=True)` as Python writes it; see the module doc for the
/// inputs miniserde cannot carry faithfully.
pub fn python_json_dumps_sorted(value: &Value) -> String {
    dumps_sorted(value)
}

/// A JSON value the `json.dumps` writer can walk: miniserde's [`Value`] here, and
/// `pyvalue::PyValue`, which holds what `json.loads` read exactly.
pub(super) trait DumpsValue: Sized {
    /// An object key, kept in the order `sort_keys=True` writes.
    type Key;

    /// What the value is: a scalar (written by [`DumpsValue::write_scalar`]) or a
    /// container to walk.
    fn view(&self) -> View<'_, Self>;

    fn write_scalar(&self, out: &mut String);

    fn write_key(key: &Self::Key, out: &mut String);
}

/// A value as the writer walks it.
pub(super) enum View<'a, V: DumpsValue> {
    Scalar,
    Array(std::slice::Iter<'a, V>),
    Object(btree_map::Iter<'a, V::Key, V>),
}

impl DumpsValue for Value {
    type Key = String;

    fn view(&self) -> View<'_, Value> {
        match self {
            Value::Array(items) => View::Array(items.iter()),
            Value::Object(entries) => View::Object(entries.iter()),
            _ => View::Scalar,
        }
    }

    fn write_scalar(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Number(number) => write_number(out, number),
            Value::String(text) => write_string(out, text),
            Value::Array(_) | Value::Object(_) => {}
        }
    }

    fn write_key(key: &String, out: &mut String) {
        write_string(out, key);
    }
}

/// `json.dumps(value, sort_keys=True)` over any [`DumpsValue`]: `", "` and `": "`
/// separators, keys in their order.
pub(super) fn dumps_sorted<V: DumpsValue>(value: &V) -> String {
    enum Frame<'a, V: DumpsValue> {
        Array(std::slice::Iter<'a, V>, bool),
        Object(btree_map::Iter<'a, V::Key, V>, bool),
    }

    let mut out = String::new();
    let mut stack: Vec<Frame<'_, V>> = Vec::new();
    let mut next = Some(value);
    loop {
        if let Some(value) = next.take() {
            match value.view() {
                View::Scalar => value.write_scalar(&mut out),
                View::Array(items) => {
                    out.push('[');
                    stack.push(Frame::Array(items, true));
                }
                View::Object(entries) => {
                    out.push('{');
                    stack.push(Frame::Object(entries, true));
                }
            }
        }
        let Some(frame) = stack.last_mut() else {
            break;
        };
        match frame {
            Frame::Array(items, first) => match items.next() {
                Some(item) => {
                    if !std::mem::replace(first, false) {
                        out.push_str(", ");
                    }
                    next = Some(item);
                }
                None => {
                    out.push(']');
                    stack.pop();
                }
            },
            Frame::Object(entries, first) => match entries.next() {
                Some((key, item)) => {
                    if !std::mem::replace(first, false) {
                        out.push_str(", ");
                    }
                    V::write_key(key, &mut out);
                    out.push_str(": ");
                    next = Some(item);
                }
                None => {
                    out.push('}');
                    stack.pop();
                }
            },
        }
    }
    out
}

fn write_number(out: &mut String, number: &Number) {
    match *number {
        Number::U64(value) => write!(out, "{value}").unwrap_or(()),
        Number::I64(value) => write!(out, "{value}").unwrap_or(()),
        Number::F64(value) => write_float(out, value),
    }
}

/// Python's `float.__repr__`, which `json.dumps` uses for finite floats.
pub(super) fn write_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    let sign = if value.is_sign_negative() { "-" } else { "" };
    let (digits, exponent) = shortest_digits(value.abs());
    out.push_str(sign);
    if (-4..16).contains(&exponent) {
        if exponent < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
            out.push_str(&digits);
        } else {
            let integer_digits = exponent as usize + 1;
            if digits.len() <= integer_digits {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', integer_digits - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..integer_digits]);
                out.push('.');
                out.push_str(&digits[integer_digits..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        write!(out, "e{exponent_sign}{:02}", exponent.unsigned_abs()).unwrap_or(());
    }
}

/// The digits and decimal exponent of Python's `repr` of a finite `value >= 0`: the
/// fewest digits that read back as `value`, and of those the closest to it, a tie
/// going to the even last digit (`568085739059748.25` is `568085739059748.2`).
///
/// Rust's `{:e}` gives the fewest digits and the closest, but breaks an exact tie
/// upwards; so a neighbour one unit away in the last digit that also reads back is
/// weighed against the exact value.
fn shortest_digits(value: f64) -> (String, i32) {
    let (digits, exponent) = split_exp(&format!("{value:e}"));
    if value == 0.0 || digits.len() > 17 {
        return (digits, exponent);
    }
    let Ok(shortest) = digits.parse::<u64>() else {
        return (digits, exponent);
    };
    let width = digits.len();
    let reads_back = |candidate: u64| {
        let text = candidate.to_string();
        text.len() == width
            && format!("{}.{}e{exponent}", &text[..1], &text[1..])
                .parse::<f64>()
                .is_ok_and(|parsed| parsed == value)
    };
    for neighbour in [shortest.checked_sub(1), shortest.checked_add(1)]
        .into_iter()
        .flatten()
    {
        if !reads_back(neighbour) {
            continue;
        }
        // The midpoint of the two, one digit longer, against the exact value.
        let lower = shortest.min(neighbour);
        let midpoint_exponent = exponent - width as i32;
        let ordering = compare_exact(value, lower * 10 + 5, midpoint_exponent);
        let upper = lower + 1;
        let closest = match ordering {
            std::cmp::Ordering::Less => lower,
            std::cmp::Ordering::Greater => upper,
            std::cmp::Ordering::Equal if lower % 2 == 0 => lower,
            std::cmp::Ordering::Equal => upper,
        };
        let text = closest.to_string();
        let trimmed = text.trim_end_matches('0');
        return (trimmed.to_owned(), exponent);
    }
    (digits, exponent)
}

/// `d.ddde<exp>` as the digits without the point and the exponent of the first digit.
fn split_exp(scientific: &str) -> (String, i32) {
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("LowerExp output of a finite float has an exponent");
    let exponent: i32 = exponent.parse().expect("LowerExp exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    (digits, exponent)
}

/// Compares a finite `value > 0` with `digits · 10^exponent`, exactly: both sides
/// scaled to integers (a few hundred 32-bit words at most) and compared. A microsecond
/// or two, where formatting the value's exact decimal expansion took fifteen.
fn compare_exact(value: f64, digits: u64, exponent: i32) -> std::cmp::Ordering {
    let bits = value.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (mantissa, binary_exponent) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), biased - 1075)
    };
    // value = mantissa · 2^binary_exponent, other = digits · 10^exponent; multiply both
    // by 2^shift2 · 10^shift10 so that every power is whole.
    let shift2 = (-binary_exponent).max(0) as u32;
    let shift10 = (-exponent).max(0) as u32;
    let mut left = Big::from(mantissa);
    left.shl((binary_exponent + shift2 as i32) as u32);
    left.mul_pow10(shift10);
    let mut right = Big::from(digits);
    right.mul_pow10((exponent + shift10 as i32) as u32);
    right.shl(shift2);
    left.cmp(&right)
}

/// An unsigned integer as little-endian 32-bit words, with just what `compare_exact`
/// needs.
struct Big(Vec<u32>);

impl Big {
    fn from(value: u64) -> Big {
        Big(vec![value as u32, (value >> 32) as u32])
    }

    fn mul_small(&mut self, factor: u32) {
        let mut carry = 0u64;
        for word in &mut self.0 {
            let product = u64::from(*word) * u64::from(factor) + carry;
            *word = product as u32;
            carry = product >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    fn mul_pow10(&mut self, mut power: u32) {
        while power >= 9 {
            self.mul_small(1_000_000_000);
            power -= 9;
        }
        self.mul_small(10u32.pow(power));
    }

    fn shl(&mut self, bits: u32) {
        let (words, bits) = ((bits / 32) as usize, bits % 32);
        if bits > 0 {
            let mut carry = 0u32;
            for word in &mut self.0 {
                let shifted = (*word << bits) | carry;
                carry = *word >> (32 - bits);
                *word = shifted;
            }
            if carry > 0 {
                self.0.push(carry);
            }
        }
        self.0.splice(0..0, std::iter::repeat_n(0, words));
    }

    fn cmp(&self, other: &Big) -> std::cmp::Ordering {
        let significant =
            |words: &[u32]| words.len() - words.iter().rev().take_while(|w| **w == 0).count();
        let (a, b) = (
            &self.0[..significant(&self.0)],
            &other.0[..significant(&other.0)],
        );
        a.len()
            .cmp(&b.len())
            .then_with(|| a.iter().rev().cmp(b.iter().rev()))
    }
}

/// A JSON string as Python writes it with `ensure_ascii=True`.
fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(character),
            _ => {
                let mut units = [0u16; 2];
                for unit in character.encode_utf16(&mut units) {
                    write!(out, "\\u{unit:04x}").unwrap_or(());
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumps(text: &str) -> String {
        let value: Value = miniserde::json::from_str(text)
            .unwrap_or_else(|_| panic!("miniserde rejects test input {text:?}"));
        python_json_dumps_sorted(&value)
    }

    fn check(input: &str, expected: &str) {
        assert_eq!(dumps(input), expected, "input {input:?}");
    }

    /// Inputs paired with `json.dumps(json.loads(input), sort_keys=True)` from CPython
    /// 3.12; the same table is checked against the local python3 when there is one.
    const TABLE: &[(&str, &str)] = &[
        ("null", "null"),
        ("true", "true"),
        ("[false]", "[false]"),
        ("{}", "{}"),
        ("[]", "[]"),
        ("[[[]], {}, [{}]]", "[[[]], {}, [{}]]"),
        (
            r#"{"b": 1, "a": [1, 2, {"d": null, "c": true}], "": false}"#,
            r#"{"": false, "a": [1, 2, {"c": true, "d": null}], "b": 1}"#,
        ),
        (
            r#"{"b":1,"a":2,"B":3,"é":4,"e":5,"😀":6,"\uffff":7,"aa":8,"a\u0000":9}"#,
            r#"{"B": 3, "a": 2, "a\u0000": 9, "aa": 8, "b": 1, "e": 5, "\u00e9": 4, "\uffff": 7, "\ud83d\ude00": 6}"#,
        ),
        (r#"{"a": 1, "a": 2}"#, r#"{"a": 2}"#),
        (r#""héllo wörld""#, r#""h\u00e9llo w\u00f6rld""#),
        (r#""漢字""#, r#""\u6f22\u5b57""#),
        (r#""😀""#, r#""\ud83d\ude00""#),
        (r#""\ud83d\ude00""#, r#""\ud83d\ude00""#),
        (r#""\u0000\u0001\u001f""#, r#""\u0000\u0001\u001f""#),
        (r#""\b\f\n\r\t\"\\\/""#, r#""\b\f\n\r\t\"\\/""#),
        ("\"\u{7f}\"", r#""\u007f""#),
        (r#""\u007e\u007f\u0080""#, r#""~\u007f\u0080""#),
        (r#""\u2028\u2029\ufeff""#, r#""\u2028\u2029\ufeff""#),
        (r#""<script>&'""#, r#""<script>&'""#),
        ("0", "0"),
        ("-0", "0"),
        ("-1", "-1"),
        ("18446744073709551615", "18446744073709551615"),
        ("9223372036854775808", "9223372036854775808"),
        ("-9223372036854775808", "-9223372036854775808"),
        ("0.1", "0.1"),
        ("1e-7", "1e-07"),
        ("1E-5", "1e-05"),
        ("0.0001", "0.0001"),
        ("123456789012345680.0", "1.2345678901234568e+17"),
        ("1e22", "1e+22"),
        ("1e16", "1e+16"),
        ("1e15", "1000000000000000.0"),
        ("9999999999999998.0", "9999999999999998.0"),
        ("-0.0", "-0.0"),
        ("0.0", "0.0"),
        ("5e-324", "5e-324"),
        ("1.0", "1.0"),
        ("1E2", "100.0"),
        ("1e+2", "100.0"),
        ("2.5", "2.5"),
        ("-1.5e-10", "-1.5e-10"),
        ("12345.678", "12345.678"),
        ("1.5e300", "1.5e+300"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ("0.85", "0.85"),
        ("[1.0, -2, 3.5e-5]", "[1.0, -2, 3.5e-05]"),
    ];

    #[test]
    fn matches_recorded_python_output() {
        for (input, expected) in TABLE {
            check(input, expected);
        }
    }

    /// `compare_exact` against the value's exact decimal expansion, which Rust's
    /// formatter writes out in full with enough precision.
    #[test]
    fn exact_comparison_agrees_with_the_full_expansion() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let value = f64::from_bits(state >> 1);
            if !value.is_finite() || value == 0.0 {
                continue;
            }
            let (digits, exponent) = split_exp(&format!("{value:.800e}"));
            for width in [1usize, 5, 16, 17, 18] {
                let head: u64 = digits[..width].parse().unwrap();
                let rest_is_zero = digits[width..].bytes().all(|digit| digit == b'0');
                let place = exponent - width as i32 + 1;
                let expected = if rest_is_zero {
                    std::cmp::Ordering::Equal
                } else {
                    std::cmp::Ordering::Greater
                };
                assert_eq!(
                    compare_exact(value, head, place),
                    expected,
                    "{value:e} {width}"
                );
                assert_eq!(
                    compare_exact(value, head + 1, place),
                    std::cmp::Ordering::Less,
                    "{value:e} {width} +1"
                );
            }
        }
        // An exact tie: this double is 568085739059748.25, halfway between .2 and .3.
        let tie = f64::from_bits(4_827_899_886_826_279_202);
        assert_eq!(
            compare_exact(tie, 56808573905974825, -2),
            std::cmp::Ordering::Equal
        );
        let mut written = String::new();
        write_float(&mut written, tie);
        assert_eq!(written, "568085739059748.2");
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let depth = 200_000;
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(dumps(&text), text);
    }

    #[test]
    fn non_finite_floats_are_written_as_python_does() {
        let write = |value: f64| python_json_dumps_sorted(&Value::Number(Number::F64(value)));
        assert_eq!(write(f64::NAN), "NaN");
        assert_eq!(write(f64::INFINITY), "Infinity");
        assert_eq!(write(f64::NEG_INFINITY), "-Infinity");
    }

    /// The documented losses: these pin down what miniserde does today, so a change in
    /// its parsing shows up here rather than as mysterious signature failures.
    #[test]
    fn known_losses_through_miniserde() {
        // Python: 18446744073709551616 and -9223372036854775809.
        check("18446744073709551616", "1.8446744073709552e+19");
        check("-9223372036854775809", "-9.223372036854776e+18");
        // Python: 3e+23. 3 * 1e23 rounds twice, since 1e23 is not exact in binary.
        check("3e23", "2.9999999999999997e+23");
        for rejected in ["NaN", "Infinity", "1e400", r#""\ud800""#] {
            assert!(
                miniserde::json::from_str::<Value>(rejected).is_err(),
                "{rejected}"
            );
        }
    }

    /// Runs the local python3 over the table and over short decimals that miniserde
    /// parses exactly (digits below 2^53, decimal exponent within 22: one rounding).
    #[test]
    fn matches_local_python3() {
        let mut inputs: Vec<String> = TABLE.iter().map(|(input, _)| input.to_string()).collect();
        for numerator in [1u64, 3, 7, 85, 12345, 999_999, 123_456_789] {
            for exponent in -16..=16 {
                inputs.push(format!("{numerator}e{exponent}"));
                inputs.push(format!("-{numerator}.5e{exponent}"));
            }
        }
        let Some(expected) = python_outputs(&inputs) else {
            return;
        };
        let mismatches: Vec<String> = inputs
            .iter()
            .zip(&expected)
            .filter(|(input, expected)| dumps(input) != **expected)
            .map(|(input, expected)| format!("{input}: python {expected}, here {}", dumps(input)))
            .collect();
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }

    /// The float writer alone, on correctly parsed values: 17-digit reprs of random bit
    /// patterns and decimals beyond miniserde's exact range. Also counts how many of
    /// these miniserde itself would parse differently, to keep the module doc honest.
    #[test]
    fn float_repr_matches_local_python3() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut inputs = Vec::new();
        while inputs.len() < 3000 {
            // xorshift64: deterministic, so a failure reproduces.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let value = f64::from_bits(state);
            if value.is_finite() {
                inputs.push(format!("{value:e}"));
            }
        }
        for exponent in [-300, -30, -23, 23, 30, 300] {
            inputs.push(format!("3e{exponent}"));
            inputs.push(format!("0.1e{exponent}"));
        }
        let Some(expected) = python_outputs(&inputs) else {
            return;
        };
        let mut miniserde_differs = 0;
        for (input, expected) in inputs.iter().zip(&expected) {
            let mut written = String::new();
            write_float(&mut written, input.parse().expect("test input is a float"));
            assert_eq!(&written, expected, "input {input}");
            if &dumps(input) != expected {
                miniserde_differs += 1;
            }
        }
        eprintln!(
            "{miniserde_differs} of {} long or large floats parse differently in miniserde",
            inputs.len()
        );
    }

    /// `json.dumps(json.loads(input), sort_keys=True)` for each input, or `None` (after
    /// saying why) when python3 cannot be run.
    fn python_outputs(inputs: &[String]) -> Option<Vec<String>> {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        const SCRIPT: &str = "import json, sys\n\
            for line in sys.stdin:\n\
            \x20   text = bytes.fromhex(line.strip()).decode('utf-8')\n\
            \x20   print(json.dumps(json.loads(text), sort_keys=True))\n";
        let child = Command::new("python3")
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) => {
                eprintln!("skipping the python3 comparison: cannot run python3: {error}");
                return None;
            }
        };
        let mut stdin = child.stdin.take().expect("stdin is piped");
        for input in inputs {
            writeln!(stdin, "{}", crate::model::hex(input.as_bytes())).expect("python3 stdin");
        }
        drop(stdin);
        let output = child.wait_with_output().expect("python3 runs");
        assert!(output.status.success(), "python3 failed: {output:?}");
        let lines: Vec<String> = String::from_utf8(output.stdout)
            .expect("ensure_ascii output is ASCII")
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(lines.len(), inputs.len());
        Some(lines)
    }
}
