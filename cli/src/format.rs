//! `--format`: docker's Go-template output (`{{.ID}}`, `{{json .}}`, `table {{.ID}}\t{{.Image}}`)
//! over a command's rows as JSON values. Every listing command renders through here:
//! [`render`] for one value, [`Output`] for a listing (table header, alignment, `json`).

use std::collections::HashMap;
use std::io::Write;

use gtmpl::{Context, Func, FuncError, Template, Value};

/// Render the Go template `template` with `.` bound to `value`; one-line error on a bad
/// template or a missing field.
pub fn render(template: &str, value: &serde_json::Value) -> Result<String, String> {
    let t = parse(template)?;
    t.render(&Context::from(to_gtmpl(value)))
        .map_err(|e| concise(&format!("cannot render --format {template:?}: {e}")))
}

/// Parse a template once, with docker's extra functions.
fn parse(template: &str) -> Result<Template, String> {
    let mut t = Template::default();
    t.add_funcs(&[
        ("json", json as Func),
        ("join", join as Func),
        ("lower", lower as Func),
        ("upper", upper as Func),
        ("title", title as Func),
        ("split", split as Func),
        ("truncate", truncate as Func),
        ("pad", pad as Func),
    ]);
    t.parse(unescape(template))
        .map_err(|e| concise(&format!("bad --format template {template:?}: {e}")))?;
    Ok(t)
}

/// gtmpl's errors quote the whole value they failed on: keep the first line, cut long.
fn concise(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or(msg);
    match line.find(", Object(").or_else(|| line.find(", Map(")) {
        Some(i) => format!("{})", &line[..i]),
        None => line.chars().take(300).collect(),
    }
}

/// The shell passes `\t` and `\n` literally; docker turns them into tabs and newlines.
fn unescape(t: &str) -> String {
    t.replace("\\t", "\t").replace("\\n", "\n")
}

/// serde_json into gtmpl's value (objects keep their keys; numbers stay integers).
fn to_gtmpl(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_gtmpl).collect()),
        serde_json::Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_gtmpl(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// gtmpl's value back into JSON (for the `json` function).
fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else {
                serde_json::Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Object(o) | Value::Map(o) => {
            serde_json::Value::Object(o.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

fn arg<'a>(args: &'a [Value], i: usize, name: &str, n: usize) -> Result<&'a Value, FuncError> {
    args.get(i)
        .ok_or_else(|| FuncError::ExactlyXArgs(name.to_string(), n))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    let v = to_json(arg(args, 0, "json", 1)?);
    serde_json::to_string(&v)
        .map(Value::String)
        .map_err(|e| FuncError::Generic(e.to_string()))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = text(arg(args, 1, "join", 2)?);
    match arg(args, 0, "join", 2)? {
        Value::Array(a) => Ok(Value::String(
            a.iter().map(text).collect::<Vec<_>>().join(&sep),
        )),
        other => Ok(Value::String(text(other))),
    }
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        text(arg(args, 0, "lower", 1)?).to_lowercase(),
    ))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        text(arg(args, 0, "upper", 1)?).to_uppercase(),
    ))
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = text(arg(args, 0, "title", 1)?);
    let mut c = s.chars();
    Ok(Value::String(match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => s,
    }))
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let s = text(arg(args, 0, "split", 2)?);
    let sep = text(arg(args, 1, "split", 2)?);
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect(),
    ))
}

fn count(v: &Value) -> Result<usize, FuncError> {
    text(v)
        .parse::<usize>()
        .map_err(|_| FuncError::Generic(format!("not a count: {v}")))
}

fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let s = text(arg(args, 0, "truncate", 2)?);
    let n = count(arg(args, 1, "truncate", 2)?)?;
    Ok(Value::String(s.chars().take(n).collect()))
}

fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let s = text(arg(args, 0, "pad", 3)?);
    let l = count(arg(args, 1, "pad", 3)?)?;
    let r = count(arg(args, 2, "pad", 3)?)?;
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(l),
        " ".repeat(r)
    )))
}

/// How a listing prints: docker's default table, a `table ...` template, a plain template
/// (one rendered line per row), or `json` (one JSON object per row).
pub struct Output {
    kind: Kind,
    rows: Vec<Vec<String>>,
    header: Option<Vec<String>>,
    lines: Vec<String>,
}

enum Kind {
    Template(Template),
    Json,
}

impl Output {
    /// `format` as given to `--format` (None: `default`, the command's own table template);
    /// `headers` names each field's column (`ID` -> `CONTAINER ID`).
    pub fn new(
        format: Option<&str>,
        default: &str,
        headers: &[(&str, &str)],
    ) -> Result<Output, String> {
        let f = format.unwrap_or(default);
        let (body, table) = match f.trim_start().strip_prefix("table") {
            Some(rest) => (rest.trim_start_matches([' ']).to_string(), true),
            None => (f.to_string(), false),
        };
        if !table && f.trim() == "json" {
            return Ok(Output {
                kind: Kind::Json,
                rows: Vec::new(),
                header: None,
                lines: Vec::new(),
            });
        }
        let body = if table && body.trim().is_empty() {
            default
                .trim_start()
                .trim_start_matches("table")
                .trim_start()
                .to_string()
        } else {
            body
        };
        let header = table.then(|| header_of(&unescape(&body), headers));
        Ok(Output {
            kind: Kind::Template(parse(&body)?),
            rows: Vec::new(),
            header,
            lines: Vec::new(),
        })
    }

    /// Add one row.
    pub fn row(&mut self, v: &serde_json::Value) -> Result<(), String> {
        match &self.kind {
            Kind::Json => self
                .lines
                .push(serde_json::to_string(v).unwrap_or_default()),
            Kind::Template(t) => {
                let s = t
                    .render(&Context::from(to_gtmpl(v)))
                    .map_err(|e| concise(&format!("cannot render --format: {e}")))?;
                if self.header.is_some() {
                    self.rows.push(s.split('\t').map(str::to_string).collect());
                } else {
                    self.lines.push(s);
                }
            }
        }
        Ok(())
    }

    /// Print everything (a table's columns aligned as docker's tabwriter: 3 spaces apart).
    pub fn print(self) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if let Some(h) = self.header {
            let mut all = vec![h];
            all.extend(self.rows);
            let cols = all.iter().map(Vec::len).max().unwrap_or(0);
            let widths: Vec<usize> = (0..cols)
                .map(|c| {
                    all.iter()
                        .filter_map(|r| r.get(c))
                        .map(|s| s.chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for r in all {
                let mut line = String::new();
                for (i, cell) in r.iter().enumerate() {
                    if i + 1 < r.len() {
                        let w = widths.get(i).copied().unwrap_or(0);
                        line.push_str(&format!("{cell:<w$}   "));
                    } else {
                        line.push_str(cell);
                    }
                }
                writeln!(out, "{}", line.trim_end())?;
            }
        } else {
            for l in self.lines {
                writeln!(out, "{l}")?;
            }
        }
        out.flush()
    }
}

/// A table's header: each `{{.Field}}` cell named as docker names its column.
fn header_of(body: &str, headers: &[(&str, &str)]) -> Vec<String> {
    body.split('\t')
        .map(|cell| {
            let mut names = Vec::new();
            let mut rest = cell;
            while let Some(i) = rest.find("{{") {
                let after = &rest[i + 2..];
                let end = after.find("}}").unwrap_or(after.len());
                let inner = after[..end].trim();
                let field = inner
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix('.'))
                    .unwrap_or(inner);
                let field = field.split('.').next().unwrap_or(field);
                let name = headers
                    .iter()
                    .find(|(f, _)| *f == field)
                    .map(|(_, h)| h.to_string())
                    .unwrap_or_else(|| field.to_uppercase());
                names.push(name);
                rest = after.get(end + 2..).unwrap_or("");
            }
            if names.is_empty() {
                cell.trim().to_string()
            } else {
                names.join(" ")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn docker_templates() {
        let v = serde_json::json!({"ID": "abc", "State": {"ExitCode": 3, "Status": "exited"},
            "Args": ["a", "b"], "Labels": {"k": "v"}, "Name": "Web"});
        let r = |t: &str| render(t, &v).unwrap();
        assert_eq!(r("{{.ID}}"), "abc");
        assert_eq!(r("{{.State.ExitCode}}"), "3");
        assert_eq!(r("{{json .Args}}"), r#"["a","b"]"#);
        assert_eq!(r("{{join .Args \",\"}}"), "a,b");
        assert_eq!(r("{{index .Labels \"k\"}}"), "v");
        assert_eq!(r("{{lower .Name}} {{upper .Name}}"), "web WEB");
        assert_eq!(r("{{range .Args}}[{{.}}]{{end}}"), "[a][b]");
        assert_eq!(r("{{if eq .State.Status \"exited\"}}x{{end}}"), "x");
        assert_eq!(r("{{.ID}}\\t{{.Name}}"), "abc\tWeb");
        assert!(render("{{.Nope}}", &v).unwrap_err().contains("Nope"));
        assert!(render("{{.ID", &v).is_err());
    }

    #[test]
    fn table_headers() {
        let h = header_of(
            "{{.ID}}\t{{.Image}}\t{{lower .Names}}",
            &[("ID", "CONTAINER ID")],
        );
        assert_eq!(h, ["CONTAINER ID", "IMAGE", "NAMES"]);
    }
}
