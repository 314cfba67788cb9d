//! Shell-like word splitting for `--shell none` and `--shell`: words split
//! on blanks, single quotes (literal), double quotes (backslash escapes `"`,
//! `\`, `$` and backquote), backslash outside quotes. No expansion of any
//! kind: `$HOME`, `*` and `~` stay as written. Used once, at start-up.

/// Splits `text` into words, or says why it cannot.
pub fn split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_like_a_shell_without_expanding() {
        assert_eq!(
            split("/bin/sh -c 'exit 3'").unwrap(),
            ["/bin/sh", "-c", "exit 3"]
        );
        assert_eq!(
            split(r#"printf '%s|' 'a b' "c \"d\"" e\ f "" $HOME"#).unwrap(),
            ["printf", "%s|", "a b", "c \"d\"", "e f", "", "$HOME"]
        );
        assert_eq!(
            split(r#""a\nb" it's"#).unwrap_err(),
            "unterminated single quote"
        );
        assert_eq!(split(r#""a\nb""#).unwrap(), ["a\\nb"]);
        assert_eq!(split("  ").unwrap(), Vec::<String>::new());
        assert!(split("\"open").is_err());
        assert!(split("end\\").is_err());
        assert_eq!(split("a'b'c").unwrap(), ["abc"]);
    }
}
