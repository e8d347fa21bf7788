//! From text to logical lines: parser directives, comments, line continuations with the
//! escape character, and heredoc bodies, as buildkit's parser reads them.

use super::Heredoc;
use crate::err;
use crate::util::Result;

/// The parser directives found at the top of the file.
pub(super) struct Directives {
    /// `# escape=`, default `\`.
    pub escape: char,
    /// `# syntax=`.
    pub syntax: Option<String>,
}

/// One instruction's text with the heredocs read after it.
pub(super) struct Logical {
    /// First line (1-based).
    pub line: usize,
    /// The instruction, continuation lines joined (escape characters removed).
    pub text: String,
    /// Heredocs named on the line, with bodies (RUN, COPY, ADD and ONBUILD of them).
    pub heredocs: Vec<Heredoc>,
}

/// Read the directives: `# name=value` lines at the very top; the first other line (a
/// comment, an empty line, an instruction, an unknown directive) ends them. Returns the
/// index of the first line after them.
pub(super) fn directives(lines: &[&str]) -> Result<(Directives, usize)> {
    let mut d = Directives {
        escape: '\\',
        syntax: None,
    };
    let mut seen: Vec<String> = Vec::new();
    for (i, raw) in lines.iter().enumerate() {
        let Some((key, value)) = directive(raw) else {
            return Ok((d, i));
        };
        if seen.contains(&key) {
            return Err(err!(
                "Dockerfile:{}: only one {key} parser directive can be used",
                i + 1
            ));
        }
        match key.as_str() {
            "escape" => {
                d.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(err!(
                            "Dockerfile:{}: invalid escape token '{value}' does not match ` or \\",
                            i + 1
                        ))
                    }
                }
            }
            "syntax" => d.syntax = Some(value),
            _ => {} // check= is accepted and ignored
        }
        seen.push(key);
    }
    Ok((d, lines.len()))
}

/// `#\s*name\s*=\s*value` with a known name.
fn directive(raw: &str) -> Option<(String, String)> {
    let rest = raw.trim_start().strip_prefix('#')?;
    let (key, value) = rest.split_once('=')?;
    let key = key.trim().to_ascii_lowercase();
    let value = value.trim();
    let valid = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && key.chars().all(|c| c.is_ascii_alphanumeric());
    if !valid || value.is_empty() || !["syntax", "escape", "check"].contains(&key.as_str()) {
        return None;
    }
    Some((key, value.to_string()))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Remove a trailing escape character (followed only by spaces and tabs): the line
/// continues.
fn continuation(line: &str, escape: char) -> (String, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(s) => (s.to_string(), true),
        None => (line.to_string(), false),
    }
}

/// Split into logical lines from `start`. Inside a continuation, comment lines and empty
/// lines are dropped (buildkit does the same; continuation lines keep their indentation).
pub(super) fn logical_lines(lines: &[&str], start: usize, escape: char) -> Result<Vec<Logical>> {
    let mut out = Vec::new();
    let mut i = start;
    while i < lines.len() {
        let first = lines[i].trim_end_matches('\r');
        i += 1;
        let line_no = i;
        if is_comment(first) {
            continue;
        }
        let (mut text, mut more) = continuation(first.trim_start(), escape);
        if !more && text.trim().is_empty() {
            continue;
        }
        while more && i < lines.len() {
            let l = lines[i].trim_end_matches('\r');
            i += 1;
            if is_comment(l) || l.trim().is_empty() {
                continue;
            }
            let (t, m) = continuation(l, escape);
            text.push_str(&t);
            more = m;
        }
        let text = text.trim().to_string();
        if text.is_empty() {
            continue;
        }
        let mut heredocs = Vec::new();
        if may_have_heredocs(&text) {
            for mut h in heredoc_words(&text, escape)? {
                let mut done = false;
                while i < lines.len() {
                    let l = lines[i].trim_end_matches('\r');
                    i += 1;
                    let end = match h.strip_tabs {
                        true => l.trim_start_matches('\t'),
                        false => l,
                    };
                    if end == h.name {
                        done = true;
                        break;
                    }
                    h.body.push_str(l);
                    h.body.push('\n');
                }
                if !done {
                    return Err(err!(
                        "Dockerfile:{line_no}: unterminated heredoc {}: no line {:?} ends it",
                        h.name,
                        h.name
                    ));
                }
                heredocs.push(h);
            }
        }
        out.push(Logical {
            line: line_no,
            text,
            heredocs,
        });
    }
    Ok(out)
}

/// RUN, COPY and ADD take heredocs, and so does ONBUILD of one of them.
fn may_have_heredocs(text: &str) -> bool {
    let mut words = text.split_whitespace().map(|w| w.to_ascii_lowercase());
    let mut first = words.next().unwrap_or_default();
    if first == "onbuild" {
        first = words.next().unwrap_or_default();
    }
    matches!(first.as_str(), "run" | "copy" | "add")
}

/// Words split at whitespace outside quotes, quotes and escapes kept as written (what
/// buildkit's parseWords gives ENV, LABEL and ARG).
pub(super) fn raw_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                continue;
            }
            None => {
                in_word = true;
                if c == '\'' || c == '"' {
                    quote = Some(c);
                } else if c == escape {
                    // An escape at the very end is dropped; otherwise it and the next
                    // character are kept together, even a quote or a space.
                    if let Some(n) = chars.next() {
                        word.push(c);
                        word.push(n);
                    }
                    continue;
                }
                word.push(c);
            }
            Some(q) => {
                if c == q {
                    quote = None;
                } else if c == escape && q != '\'' {
                    match chars.next() {
                        Some(n) => {
                            word.push(c);
                            word.push(n);
                        }
                        None => quote = None,
                    }
                    continue;
                }
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Parse a word as a heredoc marker: `[fd]<<[-]name`, name possibly quoted. The body is
/// empty until the lexer reads it.
pub(super) fn heredoc_marker(word: &str, escape: char) -> Option<Heredoc> {
    let at = word.find("<<")?;
    let (fd, rest) = (&word[..at], &word[at + 2..]);
    if !fd.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (strip_tabs, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let mut name = String::new();
    let mut quoted = false;
    let mut chars = rest.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                quoted = true;
            }
            (Some(q), _) if c == q => quote = None,
            (Some('\''), _) => name.push(c),
            (_, _) if c == escape => name.extend(chars.next()),
            _ => name.push(c),
        }
    }
    if name.is_empty() {
        return None;
    }
    Some(Heredoc {
        name,
        body: String::new(),
        expand: !quoted,
        strip_tabs,
        script: false,
        fd: fd.parse().ok(),
    })
}

/// The heredoc markers of an instruction line, in order.
pub(super) fn heredoc_words(text: &str, escape: char) -> Result<Vec<Heredoc>> {
    Ok(raw_words(text, escape)
        .iter()
        .filter(|w| !w.starts_with(['"', '\'']))
        .filter_map(|w| heredoc_marker(w, escape))
        .collect())
}
