//! The Debian package and the Ansible role, for real (as root, like the rest of the suite):
//!
//! - `scripts/build-deb.sh` builds the .deb (once for this test binary); its control fields,
//!   maintainer scripts and files are checked with `dpkg-deb`, and the binary and default
//!   configuration extracted from it run;
//! - the role (`packaging/ansible/roles/v6guard`) installs that .deb on this machine with
//!   `ansible-playbook -c local`, deploys a configuration and a policy, is idempotent, refuses a
//!   broken policy without touching /etc/v6guard, and removes (purges) the package again.
//!
//! - `lintian` finds nothing in the .deb (overrides only where packaging/debian/
//!   lintian-overrides says why), and `ansible-lint --profile production` nothing in the role;
//! - the role's `--check` run changes nothing and picks a restart, not a reload, when a key the
//!   daemon reads only at start changes.
//!
//! Nothing here touches nftables: no apply, cleanup or daemon; the service stays off.
//! `dpkg-deb`, `lintian`, `ansible-playbook` and `ansible-lint` are required (scripts/test.sh
//! installs them): a missing tool fails the test, it never skips.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The policy file the role test deploys; its presence marks leftovers of this test.
const TEST_POLICY: &str = "50-v6guard-packaging-test.yaml";
const TEST_POLICY_TEXT: &str = "\
# deployed by tests/packaging.rs; names no real network or container
networks:
  v6guard-packaging-test-net:
    icc: false
containers:
  v6guard-packaging-test:
    deny: [\"5432/tcp\"]
";

/// Fail (never skip) when a tool the packaging needs is missing.
fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        let context = if std::env::var_os("CI").is_some() {
            "CI must install it"
        } else {
            "install it"
        };
        panic!(
            "{tool} not found in PATH: {context} (apt-get install {package}; scripts/test.sh \
             installs it with the lab's packages). The packaging tests do not skip."
        );
    }
}

fn run(command: &mut Command) -> Output {
    let shown = format!("{command:?}");
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

/// Run and require exit 0; stdout.
fn run_ok(command: &mut Command) -> String {
    let shown = format!("{command:?}");
    let out = run(command);
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh scratch directory under target/tmp.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("packaging-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

/// The .deb, built once for this test binary by scripts/build-deb.sh (a release build: about
/// two minutes from scratch, seconds when target/release is current).
fn deb() -> &'static Path {
    static DEB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = DEB.get_or_init(|| {
        require_tool("dpkg-deb", "dpkg");
        let started = std::time::Instant::now();
        let out = Command::new(format!("{REPO}/scripts/build-deb.sh"))
            .current_dir(REPO)
            .output()
            .map_err(|e| format!("cannot run scripts/build-deb.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/build-deb.sh failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        eprintln!(
            "built {} in {:.1} s",
            path.display(),
            started.elapsed().as_secs_f64()
        );
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "scripts/build-deb.sh printed `{}`, not a file",
                path.display()
            ))
        }
    });
    built.as_deref().unwrap_or_else(|e| panic!("{e}"))
}

/// The dbgsym package scripts/build-deb.sh builds next to `deb`.
fn dbgsym_deb(deb: &Path) -> PathBuf {
    let name = deb.file_name().unwrap().to_string_lossy();
    let path = deb.with_file_name(name.replacen("v6guard_", "v6guard-dbgsym_", 1));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

#[test]
fn lintian_finds_nothing() {
    require_tool("lintian", "lintian");
    let deb = deb();
    // --fail-on warning: errors and warnings fail; info and pedantic tags are listed only.
    for package in [deb.to_path_buf(), dbgsym_deb(deb)] {
        let out = run(Command::new("lintian")
            .args(["--fail-on", "error,warning", "--no-tag-display-limit"])
            .arg(&package));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("lintian {}:\n{text}", package.display());
        assert!(
            out.status.success(),
            "lintian {}:\n{text}",
            package.display()
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("E: ") || l.starts_with("W: ")),
            "lintian {}:\n{text}",
            package.display()
        );
    }
}

#[test]
fn ansible_lint_production_profile_finds_nothing() {
    require_tool("ansible-lint", "ansible-lint");
    let out = run(Command::new("ansible-lint")
        .args(["--nocolor", "--profile", "production"])
        .args([
            "packaging/ansible/site.yml",
            "packaging/ansible/roles/v6guard",
        ])
        .current_dir(REPO)
        .env(
            "ANSIBLE_ROLES_PATH",
            format!("{REPO}/packaging/ansible/roles"),
        ));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ansible-lint:\n{text}");
    assert!(
        text.contains("Passed with production profile"),
        "ansible-lint:\n{text}"
    );
}

fn debian_version() -> String {
    VERSION.replace('-', "~")
}

fn control_field(deb: &Path, field: &str) -> String {
    run_ok(Command::new("dpkg-deb").arg("--field").arg(deb).arg(field))
        .trim()
        .to_string()
}

/// The package names a Depends-style field lists, alternatives included.
fn package_names(field: &str) -> Vec<String> {
    field
        .split([',', '|'])
        .filter_map(|item| item.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// `dpkg-deb --contents`: path -> (mode string, owner/group).
fn contents(deb: &Path) -> BTreeMap<String, (String, String)> {
    run_ok(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 6, "unexpected --contents line: {line}");
            (
                fields[5..].join(" "),
                (fields[0].to_string(), fields[1].to_string()),
            )
        })
        .collect()
}

fn file_names(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(Path::new(REPO).join(dir))
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn deb_has_the_control_fields_maintainer_scripts_and_files() {
    let deb = deb();
    let arch = run_ok(Command::new("dpkg").arg("--print-architecture"))
        .trim()
        .to_string();
    assert_eq!(
        deb.file_name().unwrap().to_string_lossy(),
        format!("v6guard_{}_{arch}.deb", debian_version())
    );
    let info = run_ok(Command::new("dpkg-deb").arg("--info").arg(deb));
    for script in [
        "postinst",
        "prerm",
        "postrm",
        "conffiles",
        "control",
        "md5sums",
    ] {
        assert!(
            info.contains(script),
            "no {script} in dpkg-deb --info:\n{info}"
        );
    }

    // control
    assert_eq!(control_field(deb, "Package"), "v6guard");
    assert_eq!(control_field(deb, "Version"), debian_version());
    assert_eq!(control_field(deb, "Architecture"), arch);
    assert_eq!(control_field(deb, "Section"), "net");
    assert_eq!(control_field(deb, "Priority"), "optional");
    assert_eq!(control_field(deb, "Recommends"), "docker.io | docker-ce");
    let maintainer = control_field(deb, "Maintainer");
    assert!(
        maintainer.contains(" <") && maintainer.ends_with('>'),
        "Maintainer `{maintainer}` is not `Name <email>`"
    );
    let depends = package_names(&control_field(deb, "Depends"));
    // iproute2: the binary runs `ip` for NDP proxy entries and `audit --probe`; kmod:
    // `modprobe br_netfilter` when `apply` needs it.
    for lib in ["libc6", "libmnl0", "libnftnl11", "iproute2", "kmod"] {
        assert!(
            depends.iter().any(|d| d == lib),
            "Depends {depends:?} lacks {lib}"
        );
    }
    let description = control_field(deb, "Description");
    assert!(
        description.lines().count() > 3 && description.contains("IPv6"),
        "Description too short:\n{description}"
    );
    let size: u64 = control_field(deb, "Installed-Size")
        .parse()
        .expect("Installed-Size is a number");
    assert!(size > 1000, "Installed-Size {size} KiB: no binary?");

    // maintainer scripts and conffiles
    let control = scratch("control");
    run_ok(
        Command::new("dpkg-deb")
            .arg("--control")
            .arg(deb)
            .arg(&control),
    );
    assert_eq!(
        fs::read_to_string(control.join("conffiles")).expect("conffiles"),
        "/etc/v6guard/v6guard.yaml\n"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        let mode = fs::metadata(&path).expect(script).permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{script} mode {mode:o}");
        run_ok(Command::new("sh").arg("-n").arg(&path));
        // Installing never enables or starts the service (docs/packaging.md says why).
        let text = fs::read_to_string(&path).expect(script);
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert!(
                !words.contains(&"enable") && !words.contains(&"start"),
                "{script} enables or starts something: {line}"
            );
        }
    }

    // files
    let files = contents(deb);
    for (path, (mode, owner)) in &files {
        assert_eq!(owner, "root/root", "{path} is owned by {owner}");
        assert!(
            ["./", "./etc/", "./lib/", "./usr/"]
                .iter()
                .any(|prefix| path.starts_with(prefix)),
            "unexpected path {path} ({mode})"
        );
    }
    let mut expected: Vec<(String, &str)> = vec![
        ("./usr/sbin/v6guard".into(), "-rwxr-xr-x"),
        ("./lib/systemd/system/v6guard.service".into(), "-rw-r--r--"),
        ("./etc/v6guard/v6guard.yaml".into(), "-rw-r--r--"),
        ("./etc/v6guard/policies/".into(), "drwxr-xr-x"),
        ("./usr/share/doc/v6guard/README.md".into(), "-rw-r--r--"),
        ("./usr/share/doc/v6guard/copyright".into(), "-rw-r--r--"),
        ("./usr/share/doc/v6guard/changelog.gz".into(), "-rw-r--r--"),
        ("./usr/share/man/man8/v6guard.8.gz".into(), "-rw-r--r--"),
        (
            "./usr/share/man/man8/v6guard-audit.8.gz".into(),
            "-rw-r--r--",
        ),
        (
            "./usr/share/man/man8/v6guard-daemon.8.gz".into(),
            "-rw-r--r--",
        ),
        (
            "./usr/share/bash-completion/completions/v6guard".into(),
            "-rw-r--r--",
        ),
        (
            "./usr/share/zsh/vendor-completions/_v6guard".into(),
            "-rw-r--r--",
        ),
        (
            "./usr/share/fish/vendor_completions.d/v6guard.fish".into(),
            "-rw-r--r--",
        ),
        ("./usr/lib/modules-load.d/v6guard.conf".into(), "-rw-r--r--"),
    ];
    for schema in file_names("schema") {
        expected.push((format!("./usr/share/v6guard/schema/{schema}"), "-rw-r--r--"));
    }
    for doc in file_names("docs")
        .into_iter()
        .filter(|n| n.ends_with(".md"))
    {
        expected.push((format!("./usr/share/doc/v6guard/{doc}"), "-rw-r--r--"));
    }
    let examples = file_names("policies");
    assert!(
        examples.iter().any(|n| n.ends_with(".yaml")),
        "no example policies?"
    );
    for example in &examples {
        expected.push((
            format!("./usr/share/doc/v6guard/examples/policies/{example}"),
            "-rw-r--r--",
        ));
    }
    for (path, mode) in &expected {
        match files.get(path) {
            Some((found, _)) => assert_eq!(found, mode, "mode of {path}"),
            None => panic!("{path} is not in the package; it has:\n{files:#?}"),
        }
    }
    let policies_dir: Vec<&String> = files
        .keys()
        .filter(|p| p.starts_with("./etc/v6guard/policies/") && p.len() > 23)
        .collect();
    assert!(
        policies_dir.is_empty(),
        "/etc/v6guard/policies/ ships files: {policies_dir:?}"
    );

    // the extracted package works
    let root = scratch("extracted");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root));
    let unit = fs::read_to_string(root.join("lib/systemd/system/v6guard.service")).expect("unit");
    assert_eq!(
        unit,
        fs::read_to_string(format!("{REPO}/packaging/systemd/v6guard.service")).unwrap()
    );
    assert!(
        unit.lines()
            .any(|l| l == "ExecStart=/usr/sbin/v6guard daemon")
    );
    let bin = root.join("usr/sbin/v6guard");
    assert_eq!(
        run_ok(Command::new(&bin).arg("--version")).trim(),
        format!("v6guard {VERSION}")
    );
    // The shipped binary is stripped; its symbols are in the dbgsym package, by build ID.
    let sections = run_ok(Command::new("readelf").arg("-S").arg(&bin));
    assert!(
        !sections.contains(".symtab") && !sections.contains(".debug_info"),
        "the binary is not stripped:\n{sections}"
    );
    assert!(sections.contains(".gnu_debuglink"), "no .gnu_debuglink");
    let dbgsym = dbgsym_deb(deb);
    let debug_files = contents(&dbgsym);
    assert!(
        debug_files
            .keys()
            .any(|p| p.starts_with("./usr/lib/debug/.build-id/") && p.ends_with(".debug")),
        "no debug file in {}: {debug_files:#?}",
        dbgsym.display()
    );
    // The man page is the binary's own (section 8), as `man` reads it.
    let man = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("gzip -dc \"$1\"")
            .arg("sh")
            .arg(root.join("usr/share/man/man8/v6guard.8.gz")),
    );
    assert!(
        man.starts_with(".ie") || man.contains(".TH v6guard 8"),
        "{man}"
    );
    assert!(
        man.contains("check\\-config"),
        "the man page lacks check-config"
    );
    let config = root.join("etc/v6guard/v6guard.yaml");
    let examples_dir = root.join("usr/share/doc/v6guard/examples/policies");
    let ok = run_ok(
        Command::new(&bin)
            .args(["check-config", "--offline", "--config"])
            .arg(&config)
            .arg("--policies-dir")
            .arg(&examples_dir)
            .env("V6GUARD_LOG", "warn"),
    );
    assert!(ok.contains("configuration OK"), "check-config said: {ok}");

    // The default configuration lists every key, commented out, and uncommented it is valid.
    let text = fs::read_to_string(&config).expect("v6guard.yaml");
    for key in [
        "docker_host",
        "daemon_json",
        "defaults",
        "nat66_ula",
        "nat66_gua",
        "fail_closed",
        "resync_interval",
        "metrics_listen",
        "log_format",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with('#') && l[1..].trim_start().starts_with(&format!("{key}:"))),
            "{key} is not in the default v6guard.yaml:\n{text}"
        );
    }
    assert!(
        text.lines().all(|l| l.is_empty() || l.starts_with('#')),
        "the default v6guard.yaml sets something:\n{text}"
    );
    // A commented setting is `#KEY: ...` or `#  KEY: ...` (under defaults); prose is `# ...`.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            Some(rest) if rest.starts_with("  ") => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let uncommented_path = root.join("uncommented.yaml");
    fs::write(&uncommented_path, &uncommented).expect("write");
    let ok = run_ok(
        Command::new(&bin)
            .args(["check-config", "--offline", "--config"])
            .arg(&uncommented_path)
            .arg("--policies-dir")
            .arg(&examples_dir)
            .env("V6GUARD_LOG", "warn"),
    );
    assert!(
        ok.contains("configuration OK"),
        "uncommented:\n{uncommented}\n{ok}"
    );

    let _ = fs::remove_dir_all(&root);
    let _ = fs::remove_dir_all(&control);
}

/// Whether dpkg knows the package (installed, or removed with its configuration left).
fn dpkg_knows_v6guard() -> bool {
    run(Command::new("dpkg").args(["-s", "v6guard"]))
        .status
        .success()
}

/// Purges what the role test installed, even when an assertion failed half-way.
struct Uninstall;

impl Drop for Uninstall {
    fn drop(&mut self) {
        if dpkg_knows_v6guard() {
            let _ = Command::new("dpkg").args(["--purge", "v6guard"]).output();
        }
        let _ = fs::remove_dir_all("/var/cache/v6guard-deb");
    }
}

fn ansible_playbook(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = run(Command::new("ansible-playbook")
        .args(args)
        .current_dir(dir)
        .env(
            "ANSIBLE_ROLES_PATH",
            format!("{REPO}/packaging/ansible/roles"),
        )
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_PYTHON_INTERPRETER", "auto_silent")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "false")
        .env_remove("ANSIBLE_CONFIG"));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), output)
}

/// Apply the role to this machine with the variables in `vars` (JSON).
fn apply_role(dir: &Path, name: &str, vars: &str) -> (bool, String) {
    apply_role_with(dir, name, vars, &[])
}

/// The same, with extra ansible-playbook arguments (`--check`).
fn apply_role_with(dir: &Path, name: &str, vars: &str, extra: &[&str]) -> (bool, String) {
    let vars_file = dir.join(format!("{name}.json"));
    fs::write(&vars_file, vars).expect("write vars");
    let started = std::time::Instant::now();
    let vars_arg = format!("@{}", vars_file.display());
    let mut args = vec!["-i", "localhost,", "-c", "local", "-e", vars_arg.as_str()];
    args.extend_from_slice(extra);
    args.push("play.yml");
    let result = ansible_playbook(dir, &args);
    eprintln!(
        "role run `{name}`: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    result
}

/// How the task whose name starts with `name` ended (`ok`, `changed`, `skipping`, ...).
fn task_outcome(output: &str, name: &str) -> String {
    let task = output
        .split(&format!("TASK [v6guard : {name}"))
        .nth(1)
        .unwrap_or_else(|| panic!("no task `{name}` in:\n{output}"));
    let body = task.split("TASK [").next().unwrap_or_default();
    body.lines()
        .skip(1)
        .find_map(|l| {
            l.split_once(": [")
                .map(|(outcome, _)| outcome.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no outcome for `{name}`:\n{body}"))
}

/// The `changed=N` of the play recap.
fn changed_count(output: &str) -> u32 {
    let recap = output
        .split("PLAY RECAP")
        .nth(1)
        .unwrap_or_else(|| panic!("no PLAY RECAP in:\n{output}"));
    let count = recap
        .split_whitespace()
        .find_map(|w| w.strip_prefix("changed="))
        .unwrap_or_else(|| panic!("no changed= in the recap:\n{recap}"));
    count.parse().expect("changed=N")
}

#[test]
fn ansible_role_installs_configures_checks_and_removes_v6guard() {
    require_tool("ansible-playbook", "ansible-core");
    require_tool("dpkg-deb", "dpkg");
    let dir = scratch("ansible");

    let (ok, out) = ansible_playbook(
        Path::new(REPO),
        &[
            "--syntax-check",
            "-i",
            "packaging/ansible/inventory.example",
            "packaging/ansible/site.yml",
        ],
    );
    assert!(ok, "site.yml --syntax-check:\n{out}");

    // The role purges the package at the end, /etc/v6guard included: never on a machine where
    // someone installed or configured v6guard (an earlier run of this test is fine).
    let marker = Path::new("/etc/v6guard/policies").join(TEST_POLICY);
    assert!(
        marker.exists() || !(dpkg_knows_v6guard() || Path::new("/etc/v6guard").exists()),
        "v6guard is installed or /etc/v6guard exists on this machine; this test installs and \
         purges the package (deleting /etc/v6guard): run `dpkg --purge v6guard` first, or run \
         it on a throwaway machine"
    );
    let deb = deb();
    let _uninstall = Uninstall;

    fs::write(
        dir.join("play.yml"),
        "- name: v6guard role test\n  hosts: all\n  gather_facts: false\n  roles:\n    - role: v6guard\n",
    )
    .expect("write play.yml");
    let present_with = |policy: &str, metrics: &str| {
        serde_json::json!({
            "v6guard_state": "present",
            "v6guard_deb_src": deb,
            // No systemd here, and a firewall daemon is not this test's business.
            "v6guard_service_enabled": false,
            "v6guard_config": { "log_format": "json", "resync_interval": "5m",
                                "metrics_listen": metrics,
                                "defaults": { "nat66_gua": false } },
            "v6guard_policies": { TEST_POLICY: policy },
            "v6guard_policies_exclusive": true,
        })
        .to_string()
    };
    let present = |policy: &str| present_with(policy, "[::1]:9723");

    // 1. install, configure
    let (ok, out) = apply_role(&dir, "present", &present(TEST_POLICY_TEXT));
    assert!(ok, "the role failed:\n{out}");
    let status =
        run_ok(Command::new("dpkg-query").args(["-W", "-f=${Status} ${Version}", "v6guard"]));
    assert_eq!(status, format!("install ok installed {}", debian_version()));
    let bin = Path::new("/usr/sbin/v6guard");
    assert!(
        fs::metadata(bin)
            .map(|m| m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false),
        "/usr/sbin/v6guard is not an installed executable"
    );
    assert_eq!(
        fs::read_to_string(&marker).expect("policy file"),
        TEST_POLICY_TEXT
    );
    // systemd's own parser accepts the installed unit, ExecStart included (there is no
    // systemd PID 1 here to start it): it prints any unknown key or bad value on stderr.
    require_tool("systemd-analyze", "systemd");
    let unit = run(
        Command::new("systemd-analyze").args(["verify", "/lib/systemd/system/v6guard.service"])
    );
    assert!(
        unit.status.success() && unit.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&unit.stdout),
        String::from_utf8_lossy(&unit.stderr)
    );
    let config = fs::read_to_string("/etc/v6guard/v6guard.yaml").expect("v6guard.yaml");
    assert!(
        config.contains("log_format: json") && config.contains("resync_interval: 5m"),
        "v6guard.yaml:\n{config}"
    );
    let ok_text = run_ok(
        Command::new(bin)
            .args(["check-config", "--offline"])
            .env("V6GUARD_LOG", "warn"),
    );
    assert!(
        ok_text.contains("configuration OK: 1 network and 1 container policies"),
        "check-config: {ok_text}"
    );

    // 2. a second run changes nothing
    let (ok, out) = apply_role(&dir, "present-again", &present(TEST_POLICY_TEXT));
    assert!(ok, "the second run failed:\n{out}");
    assert_eq!(
        changed_count(&out),
        0,
        "the second run changed something:\n{out}"
    );

    // 2b. --check: nothing changes on the host, and the role says what it would do: a changed
    // key read only at start (metrics_listen) means a restart; a changed policy, a reload.
    let before = fs::read_to_string("/etc/v6guard/v6guard.yaml").expect("v6guard.yaml");
    let (ok, out) = apply_role_with(
        &dir,
        "check-restart",
        &present_with(TEST_POLICY_TEXT, "[::1]:9724"),
        &["--check", "--diff"],
    );
    assert!(ok, "the --check run failed:\n{out}");
    assert!(changed_count(&out) > 0, "--check saw no change:\n{out}");
    assert!(
        out.contains("9724"),
        "--diff does not show the change:\n{out}"
    );
    assert_eq!(
        task_outcome(&out, "Restart rather than reload"),
        "changed",
        "{out}"
    );
    let (ok, out) = apply_role_with(
        &dir,
        "check-reload",
        &present(&TEST_POLICY_TEXT.replace("5432", "5433")),
        &["--check", "--diff"],
    );
    assert!(ok, "the --check run failed:\n{out}");
    assert!(changed_count(&out) > 0, "--check saw no change:\n{out}");
    assert_eq!(
        task_outcome(&out, "Restart rather than reload"),
        "skipping",
        "{out}"
    );
    assert_eq!(
        fs::read_to_string("/etc/v6guard/v6guard.yaml").expect("v6guard.yaml"),
        before,
        "--check changed v6guard.yaml"
    );
    assert_eq!(
        fs::read_to_string(&marker).expect("policy file"),
        TEST_POLICY_TEXT,
        "--check changed the policy file"
    );

    // 3. a broken policy is refused by check-config, and nothing under /etc/v6guard changes
    let broken = TEST_POLICY_TEXT.replace("deny:", "denyy:");
    let (ok, out) = apply_role(&dir, "broken", &present(&broken));
    assert!(!ok, "the role accepted a broken policy:\n{out}");
    assert!(
        out.contains(&format!(
            "/etc/v6guard/policies/{TEST_POLICY}:7:5: containers.v6guard-packaging-test.denyy: unknown key"
        )),
        "the failure does not show check-config's error:\n{out}"
    );
    assert_eq!(
        fs::read_to_string(&marker).expect("policy file"),
        TEST_POLICY_TEXT,
        "the broken policy was deployed"
    );

    // 4. remove and purge
    let absent =
        serde_json::json!({ "v6guard_state": "absent", "v6guard_purge": true }).to_string();
    let (ok, out) = apply_role(&dir, "absent", &absent);
    assert!(ok, "removing failed:\n{out}");
    assert!(
        !dpkg_knows_v6guard(),
        "dpkg still knows v6guard after the role removed it"
    );
    assert!(!bin.exists(), "/usr/sbin/v6guard is still there");
    assert!(
        !Path::new("/etc/v6guard").exists(),
        "/etc/v6guard survived the purge"
    );
    assert!(
        !Path::new("/var/cache/v6guard-deb").exists(),
        "the role left its package cache"
    );
    let _ = fs::remove_dir_all(&dir);
}
