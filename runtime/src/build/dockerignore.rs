//! `.dockerignore`: which files of the build context are left out, by docker's rules
//! (moby's patternmatcher): patterns cleaned like Go's filepath.Clean, a leading `/`
//! dropped, filepath.Match syntax (`*`, `?`, `[...]`, `\`) plus `**` for any number of
//! directories, `!` exceptions, the last matching pattern wins, and a pattern matching a
//! parent directory matches everything inside it.

use crate::err;
use crate::util::Result;

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

/// One line: its cleaned text (without `!`), whether it is an exception, and its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    exception: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// One literal character.
    Lit(char),
    /// `?`: any character but `/`.
    One,
    /// `*`: any run of characters without `/`.
    Star,
    /// `**/` or `**` inside a pattern: any run of whole directories, even none (`(.*/)?`).
    Dirs,
    /// `**` at the end: anything at all.
    All,
    /// `[...]`: ranges, possibly negated with `^` (may match `/`, as moby's regexp does).
    Class(bool, Vec<(char, char)>),
}

impl DockerIgnore {
    /// Parse the file's text. Lines starting with `#` are comments; blank lines are skipped.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exception = p.starts_with('!');
            if exception {
                p = p[1..].trim();
            }
            let mut text = clean(p);
            if text.len() > 1 && text.starts_with('/') {
                text.remove(0);
            }
            let tokens = compile(&text)
                .map_err(|e| err!(".dockerignore:{}: bad pattern {line:?}: {e}", i + 1))?;
            patterns.push(Pattern {
                text,
                exception,
                tokens,
            });
        }
        Ok(DockerIgnore { patterns })
    }

    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel_path` (relative to the context, `/`-separated) is left out: the last
    /// pattern matching it or one of its parent directories decides.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let path = clean(rel_path.trim_start_matches('/'));
        let parts: Vec<&str> = path.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            // An exception only matters once something matched, and a plain pattern only
            // until then.
            if p.exception != matched {
                continue;
            }
            let mut hit = p.matches(&path);
            // A pattern matching a parent directory matches what is inside.
            let mut i = 1;
            while !hit && i < parts.len() {
                hit = p.matches(&parts[..i].join("/"));
                i += 1;
            }
            if hit {
                matched = !p.exception;
            }
        }
        matched
    }

    /// Whether a walk must go into directory `rel_dir`: it is not excluded, or it is but an
    /// exception could match inside it (docker's rule: an exception pattern whose text
    /// starts with the directory's path and a `/`).
    pub fn may_contain_included(&self, rel_dir: &str) -> bool {
        if !self.is_excluded(rel_dir) {
            return true;
        }
        let dir = format!("{}/", clean(rel_dir.trim_start_matches('/')));
        self.patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| format!("{}/", p.text).starts_with(&dir))
    }
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        let s: Vec<char> = path.chars().collect();
        let mut memo = vec![None; (self.tokens.len() + 1) * (s.len() + 1)];
        match_at(&self.tokens, &s, 0, 0, &mut memo)
    }
}

/// Whether tokens[t..] match s[i..]; memoized on (t, i) so any pattern runs in
/// O(tokens × length²).
fn match_at(tokens: &[Token], s: &[char], t: usize, i: usize, memo: &mut [Option<bool>]) -> bool {
    let key = t * (s.len() + 1) + i;
    if let Some(r) = memo.get(key).copied().flatten() {
        return r;
    }
    let r = match tokens.get(t) {
        None => i == s.len(),
        Some(Token::Lit(c)) => s.get(i) == Some(c) && match_at(tokens, s, t + 1, i + 1, memo),
        Some(Token::One) => {
            s.get(i).is_some_and(|c| *c != '/') && match_at(tokens, s, t + 1, i + 1, memo)
        }
        Some(Token::Class(neg, ranges)) => {
            // As moby's regexp: a class may match `/`.
            s.get(i)
                .is_some_and(|c| ranges.iter().any(|(a, b)| a <= c && c <= b) != *neg)
                && match_at(tokens, s, t + 1, i + 1, memo)
        }
        Some(Token::Star) => {
            let mut j = i;
            loop {
                if match_at(tokens, s, t + 1, j, memo) {
                    break true;
                }
                if j >= s.len() || s[j] == '/' {
                    break false;
                }
                j += 1;
            }
        }
        Some(Token::All) => (i..=s.len()).any(|j| match_at(tokens, s, t + 1, j, memo)),
        Some(Token::Dirs) => {
            // Either nothing, or anything ending in a `/`.
            match_at(tokens, s, t + 1, i, memo)
                || (i..s.len()).any(|j| s[j] == '/' && match_at(tokens, s, t + 1, j + 1, memo))
        }
    };
    if let Some(m) = memo.get_mut(key) {
        *m = Some(r);
    }
    r
}

/// Translate a cleaned pattern to tokens (as patternmatcher builds its regexp).
fn compile(p: &str) -> std::result::Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                out.push(match chars.peek() {
                    None => Token::All,
                    Some(_) => Token::Dirs,
                });
            }
            '*' => out.push(Token::Star),
            '?' => out.push(Token::One),
            '\\' => out.push(Token::Lit(chars.next().unwrap_or('\\'))),
            '[' => {
                let neg = chars.peek() == Some(&'^');
                if neg {
                    chars.next();
                }
                let mut ranges = Vec::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    let lo = match c {
                        ']' if !ranges.is_empty() => {
                            closed = true;
                            break;
                        }
                        '\\' => chars.next().ok_or("unterminated character class")?,
                        c => c,
                    };
                    let hi = match chars.peek() {
                        Some('-') => {
                            chars.next();
                            match chars.next() {
                                Some('\\') => chars.next().ok_or("unterminated character class")?,
                                Some(']') | None => {
                                    return Err("bad range in character class".into())
                                }
                                Some(h) => h,
                            }
                        }
                        _ => lo,
                    };
                    if hi < lo {
                        return Err("bad range in character class".into());
                    }
                    ranges.push((lo, hi));
                }
                if !closed {
                    return Err("unterminated character class".into());
                }
                out.push(Token::Class(neg, ranges));
            }
            c => out.push(Token::Lit(c)),
        }
    }
    Ok(out)
}

/// Go's path.Clean: collapse `//`, drop `.`, resolve `..`; "" becomes ".".
pub fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&l) if l != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}
