//! `blocklet-migrate generate bash|zsh|fish|man`: shell completions and the man page, generated
//! from the clap definitions in [`super`] so they always list the real flags. The release
//! archives and the npm package ship this output (`dist/generate-docs.sh`).

use clap::{CommandFactory, ValueEnum};
use clap_complete::Shell;
use std::io::Write;

/// The name the completions are registered for: the installed command.
const COMMAND: &str = "blocklet-migrate";

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// What to print on stdout.
    #[arg(value_enum)]
    pub what: Artifact,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Artifact {
    /// Completions for bash (`/usr/share/bash-completion/completions/blocklet-migrate`).
    Bash,
    /// Completions for zsh (`_blocklet-migrate` in a directory of `$fpath`).
    Zsh,
    /// Completions for fish (`~/.config/fish/completions/blocklet-migrate.fish`).
    Fish,
    /// The man page, section 1 (`man/man1/blocklet-migrate.1`).
    Man,
}

/// Write `what` for the command line defined in [`super::Args`].
pub fn render(what: Artifact, out: &mut dyn Write) -> std::io::Result<()> {
    let mut command = super::Args::command();
    match what {
        Artifact::Bash => clap_complete::generate(Shell::Bash, &mut command, COMMAND, out),
        Artifact::Zsh => clap_complete::generate(Shell::Zsh, &mut command, COMMAND, out),
        Artifact::Fish => clap_complete::generate(Shell::Fish, &mut command, COMMAND, out),
        Artifact::Man => return clap_mangen::Man::new(command).render(out),
    }
    Ok(())
}

/// `blocklet-migrate generate WHAT`; returns the exit code.
pub fn run(args: &GenerateArgs) -> u8 {
    let mut stdout = std::io::stdout().lock();
    match render(args.what, &mut stdout).and_then(|()| stdout.flush()) {
        Ok(()) => super::EXIT_SUCCESS,
        Err(e) => {
            crate::job::console::error(&format!("cannot write the {:?} output: {e}", args.what));
            super::EXIT_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(what: Artifact) -> String {
        let mut out = Vec::new();
        render(what, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_artifact_names_the_flags_and_subcommands() {
        for what in Artifact::value_variants() {
            // roff writes a hyphen as `\-`.
            let text = rendered(*what).replace("\\-", "-");
            for needle in ["dialect", "skip-rejects", "component", "batch"] {
                assert!(text.contains(needle), "{what:?} output lacks {needle}:\n{text}");
            }
        }
    }

    #[test]
    fn completions_register_the_installed_command() {
        let bash = rendered(Artifact::Bash);
        assert!(
            bash.lines().any(|l| l.trim_start().starts_with("complete -F") && l.ends_with(" blocklet-migrate")),
            "{bash}"
        );
        assert!(rendered(Artifact::Zsh).starts_with("#compdef blocklet-migrate"));
        assert!(rendered(Artifact::Fish).contains("complete -c blocklet-migrate"));
    }

    #[test]
    fn man_page_is_section_one_with_the_version() {
        let man = rendered(Artifact::Man);
        assert!(man.contains(".TH blocklet-migrate 1"), "{man}");
        assert!(man.contains(env!("CARGO_PKG_VERSION")), "{man}");
    }
}
