//! Several commands in one sandbox run, each with its own output and exit status: `Steps`
//! writes a shell script that brackets every command with `## begin NAME` and
//! `## end NAME $?` lines, and `StepsOutput` splits the run's stdout back into steps, so a test
//! asserts each command apart (one launch instead of one per command: the machine is small).
//! In the script, `$P` is the path of `rr-probe`. Used by the DNS and addressing tests.

use crate::child::Outcome;
use crate::sandbox::Harness;

/// A script of named commands.
#[derive(Debug, Default, Clone)]
pub struct Steps {
    steps: Vec<(String, String)>,
}

impl Steps {
    /// No steps yet.
    pub fn new() -> Steps {
        Steps::default()
    }

    /// Adds command `cmd` (shell syntax, `$P` for rr-probe) under `name` (no spaces).
    pub fn step(mut self, name: &str, cmd: &str) -> Steps {
        assert!(
            !name.contains(char::is_whitespace),
            "step names have no spaces"
        );
        self.steps.push((name.to_owned(), cmd.to_owned()));
        self
    }

    /// argv of `/bin/sh -c SCRIPT` running every step in order whatever the others did.
    pub fn sh(&self, h: &Harness) -> Vec<String> {
        let probe = &h.probe(&[])[0];
        let mut script = format!("P={probe}\n");
        for (name, cmd) in &self.steps {
            script.push_str(&format!(
                "echo '## begin {name}'\n{cmd}\necho \"## end {name} $?\"\n"
            ));
        }
        vec!["/bin/sh".to_owned(), "-c".to_owned(), script]
    }
}

/// One step's share of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Its stdout lines.
    pub lines: Vec<String>,
    /// Its exit status, if it got as far as its end marker.
    pub exit: Option<i32>,
}

impl Step {
    /// True if one of its lines is exactly `line`.
    pub fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }
}

/// Splits `stdout` into steps by their markers.
pub fn split(stdout: &str) -> Vec<(String, Step)> {
    let mut out: Vec<(String, Step)> = Vec::new();
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix("## begin ") {
            out.push((
                name.to_owned(),
                Step {
                    lines: Vec::new(),
                    exit: None,
                },
            ));
        } else if let Some(rest) = line.strip_prefix("## end ") {
            let mut words = rest.split_whitespace();
            if let (Some(name), Some(code), Some(last)) =
                (words.next(), words.next(), out.last_mut())
            {
                if last.0 == name {
                    last.1.exit = code.parse().ok();
                }
            }
        } else if let Some(last) = out.last_mut() {
            last.1.lines.push(line.to_owned());
        }
    }
    out
}

/// A finished run of `Steps`, with its steps looked up by name.
pub struct StepsOutput {
    /// The whole run.
    pub out: Outcome,
    steps: Vec<(String, Step)>,
}

impl StepsOutput {
    /// Splits `out`'s stdout.
    pub fn new(out: Outcome) -> StepsOutput {
        let steps = split(&out.stdout);
        StepsOutput { out, steps }
    }

    /// Step `name`; panics with the whole output if it never ran.
    pub fn step(&self, name: &str) -> &Step {
        self.steps
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("step {name} never ran\n{}", self.out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_assigns_lines_and_exit_codes_to_their_steps() {
        let stdout = "noise\n## begin a\nx\ny\n## end a 0\n## begin b\n## end b 3\n## begin c\nz\n";
        let steps = split(stdout);
        let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(steps[0].1.lines, ["x", "y"]);
        assert_eq!(steps[0].1.exit, Some(0));
        assert_eq!((steps[1].1.lines.len(), steps[1].1.exit), (0, Some(3)));
        assert_eq!((steps[2].1.has("z"), steps[2].1.exit), (true, None));
    }
}
