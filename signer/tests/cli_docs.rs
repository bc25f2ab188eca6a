//! Shell completions and man pages come from the command line's own
//! definitions (issue 19, part 7): every subcommand has a page, and the
//! bash completion really completes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

fn signer(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_signer"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands `--help` lists (what an operator sees).
fn subcommands(path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let help = signer(&args);
    help.split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_subcommand_has_a_man_page() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_signer"))
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.starts_with("wrote ") && said.contains("man -l"),
        "{said}"
    );
    let top = subcommands(&[]);
    assert!(top.len() >= 12, "{top:?}");
    let mut pages = 0;
    for sub in &top {
        let page = dir.path().join(format!("signer-{sub}.1"));
        assert!(page.exists(), "no page for `signer {sub}`");
        pages += 1;
    }
    // One level down too: `signer keys disable` has signer-keys-disable.1.
    for sub in subcommands(&["keys"]) {
        assert!(
            dir.path().join(format!("signer-keys-{sub}.1")).exists(),
            "no page for `signer keys {sub}`"
        );
        pages += 1;
    }
    let main = std::fs::read_to_string(dir.path().join("signer.1")).unwrap();
    assert!(main.contains(".TH signer 1"), "{main}");
    assert!(main.contains(&format!("signer {}", env!("CARGO_PKG_VERSION"))));
    // The printed page is the same as the written one.
    assert_eq!(signer(&["man"]), main);
    println!("{pages} subcommand pages checked");
}

#[test]
fn bash_completion_completes_subcommands_and_options() {
    let script = signer(&["completions", "bash"]);
    let complete = |words: &str, cur: &str| -> Vec<String> {
        let words: Vec<&str> = words.split(' ').collect();
        let prev = words[words.len() - 2];
        let program = format!(
            "{script}\nCOMP_WORDS=({}); COMP_CWORD={}; _signer signer '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            words.join(" "),
            words.len() - 1
        );
        let out = Command::new("bash")
            .args(["-c", &program])
            .output()
            .expect("bash is needed to check the bash completion");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(complete("signer keys dis", "dis"), ["disable"]);
    let options = complete("signer status --", "--");
    for o in ["--config", "--metrics", "--json"] {
        assert!(options.iter().any(|x| x == o), "{o} not in {options:?}");
    }
    // The other shells get a script naming the same commands.
    for shell in ["zsh", "fish"] {
        let s = signer(&["completions", shell]);
        assert!(s.contains("disable") && s.contains("status"), "{shell}");
    }
}
