//! The peer ipc2 is most often weighed against: Python's process pools.
//!
//! Runs `python/pool_bench.py` (ProcessPoolExecutor and multiprocessing.Pool
//! on the same trivial job, adding two ints) with `python3`, and reads the
//! flat JSON object it prints. Without `python3` the section is skipped
//! with a note row. The JSON is flat (string keys, number or string values),
//! so a few lines here read it instead of a JSON crate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proc::{Result, run_captured};
use crate::report::{Figures, PYTHON_SECTION};
use crate::stats::Budget;

/// The script, in the source tree.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/pool_bench.py");

/// Runs the Python peers and records them as `py.<key>`.
pub fn run(budget: &Budget, figures: &mut Figures) {
    let Some(python) = find_on_path("python3") else {
        figures.skip(PYTHON_SECTION, "python3 not found on PATH");
        return;
    };
    if !Path::new(SCRIPT).is_file() {
        figures.skip(PYTHON_SECTION, format!("{SCRIPT} not found"));
        return;
    }
    let limit = if budget.quick {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(120)
    };
    let mut args = vec![SCRIPT];
    args.extend(budget.flag());
    let result =
        run_captured(&python, &args, limit).and_then(|output| parse_flat_json(&output.stdout));
    match result {
        Ok(fields) => {
            for (key, value) in fields {
                match value {
                    Value::Number(number) => figures.set(format!("py.{key}"), number),
                    Value::Text(text) => figures.info(format!("Python {key}"), text),
                }
            }
        }
        Err(e) => figures.skip(PYTHON_SECTION, format!("pool_bench.py failed: {e}")),
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// A value of the flat JSON object.
#[derive(Debug, PartialEq)]
enum Value {
    Number(f64),
    Text(String),
}

/// Parses `{"key": 1.5, "other": "text", ...}` (no nesting; `true`,
/// `false` and `null` are skipped).
fn parse_flat_json(text: &str) -> Result<Vec<(String, Value)>> {
    let mut chars = text.trim().chars().peekable();
    let mut fields = Vec::new();
    let bad =
        |what: &str| -> crate::proc::BoxError { format!("pool_bench.py output: {what}").into() };
    if chars.next() != Some('{') {
        return Err(bad("expected a JSON object"));
    }
    loop {
        skip_space(&mut chars);
        match chars.peek() {
            Some('}') => break,
            Some(',') => {
                chars.next();
                continue;
            }
            Some('"') => {}
            _ => return Err(bad("expected a key")),
        }
        let key = read_string(&mut chars).ok_or_else(|| bad("unterminated key"))?;
        skip_space(&mut chars);
        if chars.next() != Some(':') {
            return Err(bad("expected ':'"));
        }
        skip_space(&mut chars);
        if chars.peek() == Some(&'"') {
            let text = read_string(&mut chars).ok_or_else(|| bad("unterminated string"))?;
            fields.push((key, Value::Text(text)));
            continue;
        }
        let mut literal = String::new();
        while let Some(&c) = chars.peek() {
            if c == ',' || c == '}' || c.is_whitespace() {
                break;
            }
            literal.push(c);
            chars.next();
        }
        match literal.as_str() {
            "true" | "false" | "null" => {}
            number => {
                let number = number
                    .parse()
                    .map_err(|_| bad(&format!("{key}: {number:?} is not a number")))?;
                fields.push((key, Value::Number(number)));
            }
        }
    }
    Ok(fields)
}

fn skip_space(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.peek().is_some_and(|c| c.is_whitespace()) {
        chars.next();
    }
}

/// Reads a `"..."` string (simple escapes only).
fn read_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    if chars.next() != Some('"') {
        return None;
    }
    let mut text = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(text),
            '\\' => match chars.next()? {
                'n' => text.push('\n'),
                't' => text.push('\t'),
                other => text.push(other),
            },
            c => text.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scripts_output() {
        let fields =
            parse_flat_json(r#" {"a": 1.5, "v": "3.11 \"x\"", "n": null, "b": -2e3} "#).unwrap();
        assert_eq!(
            fields,
            vec![
                ("a".into(), Value::Number(1.5)),
                ("v".into(), Value::Text("3.11 \"x\"".into())),
                ("b".into(), Value::Number(-2000.0)),
            ]
        );
        assert!(parse_flat_json("[1]").is_err());
    }
}
