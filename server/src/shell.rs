//! `tessera sql`: runs statements from a string, a file or the terminal.

use std::io::IsTerminal;

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use tessera_engine::Database;

use crate::print;

/// Runs `sql` statement by statement, printing each output as it comes;
/// stops at the first error. Returns whether all succeeded.
pub fn run_script(db: &Database, sql: &str, out: &mut dyn std::io::Write) -> bool {
    let statements = match db.parse(sql) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out, "{}", print::error(&e));
            return false;
        }
    };
    for stmt in statements {
        match db.run(stmt) {
            Ok(o) => {
                let _ = writeln!(out, "{}", print::table(&o));
            }
            Err(e) => {
                let _ = writeln!(out, "{}", print::error(&e));
                return false;
            }
        }
    }
    true
}

/// Whether `buf` holds at least one complete statement (ends with `;`
/// outside quotes).
fn complete(buf: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut last = ' ';
    for c in buf.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None => {}
        }
        if !c.is_whitespace() {
            last = c;
        }
    }
    quote.is_none() && last == ';'
}

/// The interactive shell: statements end with `;`, `\q` quits, history is
/// kept in `~/.tessera_history`.
pub fn interactive(db: &Database, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    if !std::io::stdin().is_terminal() {
        let mut sql = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut sql)?;
        run_script(db, &sql, out);
        return Ok(());
    }
    let mut editor = DefaultEditor::new().map_err(std::io::Error::other)?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".tessera_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    writeln!(
        out,
        "Tessera {} — end statements with ';', \\q quits.",
        env!("CARGO_PKG_VERSION")
    )?;
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() {
            "tessera=> "
        } else {
            "tessera-> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if buf.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
                    break;
                }
                buf.push_str(&line);
                buf.push('\n');
                if complete(&buf) {
                    let _ = editor.add_history_entry(buf.trim());
                    run_script(db, &buf, out);
                    buf.clear();
                }
            }
            Err(ReadlineError::Interrupted) => buf.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(std::io::Error::other(e)),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::complete;

    #[test]
    fn statements_end_at_a_semicolon_outside_quotes() {
        assert!(complete("SELECT 1;"));
        assert!(complete("SELECT 1;\n  "));
        assert!(!complete("SELECT ';'"));
        assert!(!complete("SELECT 1"));
        assert!(complete("SELECT 'a;b';"));
    }
}
