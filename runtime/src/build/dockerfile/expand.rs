//! Docker's word expansion (buildkit's shell lexer): `$v`, `${v}`, `${v:-w}`, `${v:+w}`,
//! `${v-w}`, `${v+w}`, `${v:?msg}`, `${v?msg}`, quotes (single quotes literal, double
//! quotes expand) and the escape character. Used for ENV, ARG, WORKDIR, USER, COPY, ADD,
//! EXPOSE, LABEL, VOLUME, STOPSIGNAL and FROM arguments; never for shell-form commands,
//! which the shell expands itself.

use crate::err;
use crate::util::Result;

/// Expand one word: quotes removed, variables replaced, no word splitting.
pub fn expand(word: &str, escape: char, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut lex = Lex::new(word, escape, lookup);
    Ok(lex.process(None)?.0)
}

/// Expand and split into words as docker does for multi-word instructions: whitespace
/// outside quotes separates words, and so does whitespace in an unquoted expansion.
pub fn expand_words(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>> {
    let mut lex = Lex::new(text, escape, lookup);
    Ok(lex.process(None)?.1.finish())
}

/// Expand a heredoc body whose delimiter was not quoted, as the shell does a here-document:
/// `$v`, `${v...}` and the escape character before `$`, itself or a newline; quotes are
/// ordinary characters.
pub fn expand_heredoc(
    body: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String> {
    let mut lex = Lex::new(body, escape, lookup);
    let mut out = String::new();
    while let Some(c) = lex.peek() {
        if c == '$' {
            out.push_str(&lex.dollar()?);
            continue;
        }
        lex.next();
        if c == escape {
            match lex.peek() {
                Some('\n') => {
                    lex.next();
                    continue;
                }
                Some(n) if n == '$' || n == escape => {
                    lex.next();
                    out.push(n);
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    Ok(out)
}

/// Words being collected: `raw` characters (quoted or escaped) never split.
#[derive(Default)]
struct Words {
    done: Vec<String>,
    cur: String,
    in_word: bool,
}

impl Words {
    fn add(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word {
                self.done.push(std::mem::take(&mut self.cur));
                self.in_word = false;
            }
        } else {
            self.add_raw(c);
        }
    }
    fn add_raw(&mut self, c: char) {
        self.cur.push(c);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if self.in_word {
            self.done.push(self.cur);
        }
        self.done
    }
}

struct Lex<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Lex<'a> {
    fn new(s: &str, escape: char, lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Lex {
            chars: s.chars().collect(),
            pos: 0,
            escape,
            lookup,
        }
    }
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Process up to `stop` (consumed) or the end; the expanded text and its words.
    fn process(&mut self, stop: Option<char>) -> Result<(String, Words)> {
        let mut out = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.next();
                return Ok((out, words));
            }
            match c {
                '\'' | '"' => {
                    let s = match c {
                        '\'' => self.single_quote()?,
                        _ => self.double_quote()?,
                    };
                    // An empty "" still makes a word.
                    words.in_word = true;
                    s.chars().for_each(|c| words.add_raw(c));
                    out.push_str(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    s.chars().for_each(|c| words.add(c));
                    out.push_str(&s);
                }
                _ => {
                    self.next();
                    if c == self.escape {
                        // The escape character takes the next one literally; at the end
                        // of the word it is dropped.
                        match self.next() {
                            Some(n) => {
                                words.add_raw(n);
                                out.push(n);
                            }
                            None => break,
                        }
                    } else {
                        words.add(c);
                        out.push(c);
                    }
                }
            }
        }
        match stop {
            Some(s) => Err(err!(
                "unexpected end of statement while looking for matching {s}"
            )),
            None => Ok((out, words)),
        }
    }

    fn single_quote(&mut self) -> Result<String> {
        self.next();
        let mut out = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(err!(
                        "unexpected end of statement while looking for matching single-quote"
                    ))
                }
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String> {
        self.next();
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(err!(
                        "unexpected end of statement while looking for matching double-quote"
                    ))
                }
                Some('"') => {
                    self.next();
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) => {
                    self.next();
                    if c == self.escape {
                        // Inside double quotes only ", $ and the escape character itself
                        // are escaped; any other escape stays as written.
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.next();
                                out.push(n);
                                continue;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(|d| d.is_ascii_digit()) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && "*#@?!$-".contains(c) {
                self.next();
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            self.next();
            name.push(c);
        }
        name
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn dollar(&mut self) -> Result<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.get(&name).unwrap_or_default());
        }
        self.next();
        match self.peek() {
            None => return Err(err!("syntax error: missing '}}'")),
            Some('{' | '}' | ':') => return Err(err!("syntax error: bad substitution")),
            _ => {}
        }
        let name = self.name();
        let c = self.next();
        let value = self.get(&name);
        match c {
            Some('}') => Ok(value.unwrap_or_default()),
            Some(m @ ('-' | '+' | '?')) => {
                let word = self.modifier_word()?;
                Self::apply(&name, m, value, false, word)
            }
            Some(':') => {
                let m = self.next();
                let word = self.modifier_word()?;
                match m {
                    Some(m @ ('-' | '+' | '?')) => Self::apply(&name, m, value, true, word),
                    Some(m) => Err(err!("unsupported modifier ({m}) in substitution")),
                    None => Err(err!("syntax error: missing '}}'")),
                }
            }
            Some(m @ ('#' | '%')) => {
                let longest = self.peek() == Some(m);
                if longest {
                    self.next();
                }
                let pat: Vec<char> = self.modifier_word()?.chars().collect();
                let v: Vec<char> = value.unwrap_or_default().chars().collect();
                Ok(trim_pattern(&v, &pat, m == '#', longest))
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let (pat, _) = self.process(Some('/'))?;
                let repl = self.modifier_word()?;
                let pat: Vec<char> = pat.chars().collect();
                let v: Vec<char> = value.unwrap_or_default().chars().collect();
                Ok(replace_pattern(&v, &pat, &repl, all))
            }
            Some(m) => Err(err!("unsupported modifier ({m}) in substitution")),
            None => Err(err!("syntax error: missing '}}'")),
        }
    }

    fn modifier_word(&mut self) -> Result<String> {
        match self.process(Some('}')) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.peek().is_none() => Err(err!("syntax error: missing '}}'")),
            Err(e) => Err(e),
        }
    }

    /// `${name<colon?><m>word}`: with the colon, an empty value counts as unset.
    fn apply(
        name: &str,
        m: char,
        value: Option<String>,
        colon: bool,
        word: String,
    ) -> Result<String> {
        let unset = value.is_none();
        let value = value.unwrap_or_default();
        let missing = unset || (colon && value.is_empty());
        match m {
            '-' if missing => Ok(word),
            '-' => Ok(value),
            '+' if missing => Ok(String::new()),
            '+' => Ok(word),
            _ if unset => Err(err!(
                "{name}: {}",
                if word.is_empty() {
                    "is not allowed to be unset"
                } else {
                    &word
                }
            )),
            _ if missing => Err(err!(
                "{name}: {}",
                if word.is_empty() {
                    "is not allowed to be empty"
                } else {
                    &word
                }
            )),
            _ => Ok(value),
        }
    }
}

/// Shell pattern match of the whole of `s`: `*`, `?`, `\\x` literal. Dynamic programming
/// over (pattern, text) positions, so no pattern can take exponential time.
fn glob(p: &[char], s: &[char]) -> bool {
    // ok[j]: the pattern so far matches s[..j].
    let mut ok = vec![false; s.len() + 1];
    ok[0] = true;
    let mut k = 0;
    while k < p.len() {
        let (c, lit) = match p[k] {
            '\\' if k + 1 < p.len() => {
                k += 1;
                (p[k], true)
            }
            c => (c, false),
        };
        k += 1;
        let mut next = vec![false; s.len() + 1];
        match c {
            '*' if !lit => {
                let mut any = false;
                for (j, n) in next.iter_mut().enumerate() {
                    any |= ok[j];
                    *n = any;
                }
            }
            _ => {
                for j in 0..s.len() {
                    next[j + 1] = ok[j] && ((c == '?' && !lit) || s[j] == c);
                }
            }
        }
        ok = next;
    }
    ok[s.len()]
}

/// `${v#p}` `${v##p}` (prefix) and `${v%p}` `${v%%p}` (suffix): remove the shortest or
/// longest match.
fn trim_pattern(v: &[char], p: &[char], prefix: bool, longest: bool) -> String {
    let n = v.len();
    let mut lens: Vec<usize> = (0..=n).collect();
    if longest {
        lens.reverse();
    }
    for k in lens {
        let (part, keep) = match prefix {
            true => (&v[..k], &v[k..]),
            false => (&v[n - k..], &v[..n - k]),
        };
        if glob(p, part) {
            return keep.iter().collect();
        }
    }
    v.iter().collect()
}

/// `${v/p/r}` (first match, longest at the leftmost place) and `${v//p/r}` (every match).
fn replace_pattern(v: &[char], p: &[char], repl: &str, all: bool) -> String {
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i < v.len() {
        let hit = match replaced && !all {
            true => None,
            false => (i + 1..=v.len()).rev().find(|&j| glob(p, &v[i..j])),
        };
        match hit {
            Some(j) => {
                out.push_str(repl);
                replaced = true;
                i = j;
            }
            None => {
                out.push(v[i]);
                i += 1;
            }
        }
    }
    out
}
