//! Docker's `--user` / `USER` resolution against a container's `/etc/passwd` and `/etc/group`.
//!
//! Pure: the caller reads the two files out of the container's root filesystem and passes
//! their contents in. The result is what Docker puts in the OCI spec's `process.user`, plus
//! the `HOME` that runc adds to the environment when the process has none.
//!
//! The rules are those of runc's user package (`GetExecUser`, `GetAdditionalGroups`) as moby
//! calls them, including their quirks:
//!
//! - The spec is split on `:`; the first field is the user, the second the group, and any
//!   further fields are ignored. A field that parses as a decimal integer (Go's `Atoi`: an
//!   optional `+`/`-` sign, then digits) is an id, never a name; an id outside
//!   `0..=2^31-1` is an error.
//! - `/etc/passwd` lines are trimmed and skipped when blank, but `#` comments are *not*
//!   skipped (runc parses them as entries). `/etc/group` lines are trimmed and skipped when
//!   blank or starting with `#`. Missing fields are empty, and numeric fields that do not
//!   parse are 0, so malformed lines still take part in matching. The first match wins.
//! - A user name must exist; a numeric uid need not (the gid is then 0 unless a group is
//!   given). A group name must exist; a numeric gid need not.
//! - Supplementary groups from `/etc/group` (those listing the user's name) are only looked
//!   up when no group is given in the spec and a passwd entry matched.
//! - `--group-add` names must exist in `/etc/group`; numbers need not. The gid of a group
//!   found by name or number must be in range.

/// The most of `/etc/passwd` or `/etc/group` runc reads for the user spec; a longer file is an
/// error. (`--group-add` lookups read `/etc/group` without this cap.) Callers may read at most
/// `MAX_FILE_BYTES + 1` bytes of `/etc/passwd`; they need the whole of `/etc/group` only when
/// there are `--group-add` values.
pub const MAX_FILE_BYTES: usize = 10 << 20;

/// The longest `/etc/passwd` line runc's scanner accepts is one byte less than this.
const MAX_PASSWD_LINE: usize = 64 << 10;
/// The longest `/etc/group` line runc's scanner accepts is one byte less than this.
const MAX_GROUP_LINE: usize = 1 << 20;
/// runc caps ids at the largest signed 32-bit value, for 32-bit systems.
const MAX_ID: i64 = (1 << 31) - 1;

/// The identity a container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Docker's `process.user.additionalGids`: the primary gid first, then the groups in
    /// `/etc/group` that list the user, then the `--group-add` groups (duplicates among
    /// those removed, in the order given).
    pub additional_gids: Vec<u32>,
    /// The `HOME` runc sets when the process environment has no `HOME` or an empty one: the
    /// home directory of the first passwd entry with the final uid (which may be empty), or
    /// "/" when there is none.
    pub home: String,
}

/// Why a user spec could not be resolved; the messages are Docker's.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UserError {
    /// A user name with no passwd entry (or no passwd file).
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UserNotFound(String),
    /// A group name (in the spec or `--group-add`) with no group entry (or no group file).
    #[error("unable to find group {0}: no matching entries in group file")]
    GroupNotFound(String),
    /// A numeric uid or gid in the spec or `--group-add`, or the gid of a `--group-add`
    /// group, outside `0..=2^31-1`.
    #[error("uids and gids must be in range 0-2147483647")]
    Range,
    /// `/etc/passwd` could not be read as runc reads it.
    #[error("unable to find user {user}: {cause}")]
    Passwd { user: String, cause: FileProblem },
    /// `/etc/group` could not be read while looking up the spec's group or the user's groups.
    #[error("unable to find groups for spec {user}: {cause}")]
    Group { user: String, cause: FileProblem },
    /// `/etc/group` could not be read while looking up `--group-add` groups.
    #[error("unable to find additional groups [{}]: {cause}", groups.join(" "))]
    AdditionalGroups {
        groups: Vec<String>,
        cause: FileProblem,
    },
}

/// What is wrong with a passwd or group file's contents.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum FileProblem {
    #[error("file exceeds {MAX_FILE_BYTES} bytes")]
    TooLarge,
    #[error("bufio.Scanner: token too long")]
    LineTooLong,
}

/// Resolves a Docker user spec.
///
/// `spec` is "", "user", "uid", "user:group", "uid:gid", "user:gid", "uid:group".
/// `passwd`/`group` are the files' contents, None when the file doesn't exist in the image.
/// `extra_groups` are `--group-add` values (names or numbers).
pub fn resolve(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
    extra_groups: &[String],
) -> Result<ExecUser, UserError> {
    let mut fields = spec.split(':');
    let user_arg = fields.next().unwrap_or("");
    let group_arg = fields.next().unwrap_or("");
    let uid_arg = parse_id(user_arg)?;
    let gid_arg = parse_id(group_arg)?;

    let users = match passwd {
        Some(text) => parse_passwd(text).map_err(|cause| UserError::Passwd {
            user: if user_arg.is_empty() { "0" } else { user_arg }.to_owned(),
            cause,
        })?,
        None => Vec::new(),
    };
    let matched = users.iter().find(|u| {
        if user_arg.is_empty() {
            u.uid == 0
        } else if let Some(uid) = uid_arg {
            u.uid == uid
        } else {
            u.name == user_arg
        }
    });

    let (mut uid, mut gid) = (0_i64, 0_i64);
    let mut matched_name = "";
    match (matched, uid_arg) {
        (Some(u), _) => {
            uid = u.uid;
            gid = u.gid;
            matched_name = u.name;
        }
        (None, _) if user_arg.is_empty() => {}
        (None, Some(id)) => uid = id,
        (None, None) => return Err(UserError::UserNotFound(user_arg.to_owned())),
    }

    let mut supplementary = Vec::new();
    if !group_arg.is_empty() || !matched_name.is_empty() {
        let groups = match group {
            Some(text) => parse_group(text, true).map_err(|cause| UserError::Group {
                user: matched_name.to_owned(),
                cause,
            })?,
            None => Vec::new(),
        };
        if group_arg.is_empty() {
            supplementary = groups
                .iter()
                .filter(|g| g.members.contains(&matched_name))
                .map(|g| g.gid)
                .collect();
        } else {
            let found = groups.iter().find(|g| match gid_arg {
                Some(id) => g.gid == id,
                None => g.name == group_arg,
            });
            gid = match (found, gid_arg) {
                (Some(g), _) => g.gid,
                (None, Some(id)) => id,
                (None, None) => return Err(UserError::GroupNotFound(group_arg.to_owned())),
            };
        }
    }

    let extra = additional_groups(extra_groups, group)?;

    let home = users
        .iter()
        .find(|u| u.uid == i64::from(go_uint32(uid)))
        .map_or("/", |u| u.home)
        .to_owned();

    let mut additional_gids = vec![go_uint32(gid)];
    additional_gids.extend(supplementary.into_iter().map(go_uint32));
    additional_gids.extend(extra);
    Ok(ExecUser {
        uid: go_uint32(uid),
        gid: go_uint32(gid),
        additional_gids,
        home,
    })
}

/// runc's `GetAdditionalGroups`, in the order given rather than Go's map order.
fn additional_groups(args: &[String], group: Option<&str>) -> Result<Vec<u32>, UserError> {
    if args.is_empty() {
        return Ok(Vec::new());
    }
    let parsed = args
        .iter()
        .map(|a| parse_id(a).map(|id| (a.as_str(), id)))
        .collect::<Result<Vec<_>, _>>()?;
    let groups = match group {
        Some(text) => parse_group(text, false).map_err(|cause| UserError::AdditionalGroups {
            groups: args.to_vec(),
            cause,
        })?,
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for (name, id) in parsed {
        let found = groups.iter().find(|g| match id {
            Some(id) => g.gid == id,
            None => g.name == name,
        });
        let gid = match (found, id) {
            (Some(g), _) if !(0..=MAX_ID).contains(&g.gid) => return Err(UserError::Range),
            (Some(g), _) => g.gid,
            (None, Some(id)) => id,
            (None, None) => return Err(UserError::GroupNotFound(name.to_owned())),
        };
        let gid = go_uint32(gid);
        if !out.contains(&gid) {
            out.push(gid);
        }
    }
    Ok(out)
}

/// Go's `uint32(int)` conversion, as moby applies it to ids taken from the files unchecked.
fn go_uint32(id: i64) -> u32 {
    id as u32
}

/// runc's `parseNumeric`: `Ok(None)` for a name (or ""), `Ok(Some(id))` for an id in range.
fn parse_id(arg: &str) -> Result<Option<i64>, UserError> {
    match atoi(arg) {
        Atoi::Syntax => Ok(None),
        Atoi::Range(_) => Err(UserError::Range),
        Atoi::Ok(id) if (0..=MAX_ID).contains(&id) => Ok(Some(id)),
        Atoi::Ok(_) => Err(UserError::Range),
    }
}

/// The outcome of Go's `strconv.Atoi` on a 64-bit platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atoi {
    Ok(i64),
    Syntax,
    /// Out of range; the value is clamped to `i64::MIN` or `i64::MAX`.
    Range(i64),
}

impl Atoi {
    /// The value Go code gets when it ignores the error.
    fn value(self) -> i64 {
        match self {
            Atoi::Ok(v) | Atoi::Range(v) => v,
            Atoi::Syntax => 0,
        }
    }
}

fn atoi(s: &str) -> Atoi {
    let (negative, digits) = match s.as_bytes() {
        [b'+', rest @ ..] => (false, rest),
        [b'-', rest @ ..] => (true, rest),
        all => (false, all),
    };
    if digits.is_empty() {
        return Atoi::Syntax;
    }
    let mut n: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return Atoi::Syntax;
        }
        // Go stops at the first overflow and reports a range error, even if a later
        // character is not a digit.
        match n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
        {
            Some(next) => n = next,
            None => {
                n = u64::MAX;
                break;
            }
        }
    }
    const CUTOFF: u64 = 1 << 63;
    if !negative && n >= CUTOFF {
        Atoi::Range(i64::MAX)
    } else if negative && n > CUTOFF {
        Atoi::Range(i64::MIN)
    } else if negative {
        // n <= 2^63, so this is exact (2^63 becomes i64::MIN).
        Atoi::Ok((n as i64).wrapping_neg())
    } else {
        Atoi::Ok(n as i64)
    }
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: i64,
    gid: i64,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: i64,
    members: Vec<&'a str>,
}

/// The lines of a file as Go's `bufio.Scanner` with `ScanLines` yields them (before trimming).
/// `capped`: runc reads at most [`MAX_FILE_BYTES`] of the file.
fn scan_lines(
    text: &str,
    max_line: usize,
    capped: bool,
) -> Result<impl Iterator<Item = &str>, FileProblem> {
    if capped && text.len() > MAX_FILE_BYTES {
        return Err(FileProblem::TooLarge);
    }
    let lines = || text.split_terminator('\n');
    if lines().any(|l| l.len() >= max_line) {
        return Err(FileProblem::LineTooLong);
    }
    Ok(lines())
}

/// runc's `ParsePasswdFilter`: blank lines skipped, comments not.
fn parse_passwd(text: &str) -> Result<Vec<PasswdEntry<'_>>, FileProblem> {
    Ok(scan_lines(text, MAX_PASSWD_LINE, true)?
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            // name:password:UID:GID:GECOS:directory:shell
            let f: Vec<&str> = line.split(':').collect();
            let field = |i: usize| f.get(i).copied().unwrap_or("");
            PasswdEntry {
                name: field(0),
                uid: atoi(field(2)).value(),
                gid: atoi(field(3)).value(),
                home: field(5),
            }
        })
        .collect())
}

/// runc's `ParseGroupFilter`: blank lines and `#` comments skipped. `capped`: whether runc
/// opened the file with its size cap (not for `--group-add`).
fn parse_group(text: &str, capped: bool) -> Result<Vec<GroupEntry<'_>>, FileProblem> {
    Ok(scan_lines(text, MAX_GROUP_LINE, capped)?
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            // group_name:password:GID:user_list
            let f: Vec<&str> = line.split(':').collect();
            let field = |i: usize| f.get(i).copied().unwrap_or("");
            let list = field(3);
            GroupEntry {
                name: field(0),
                gid: atoi(field(2)).value(),
                members: if list.is_empty() {
                    Vec::new()
                } else {
                    list.split(',').collect()
                },
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Want = Result<ExecUser, UserError>;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/ash
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001:Bob:/home/bob:/bin/sh
toor:x:0:0:second root:/toor:/bin/sh
nohome:x:1002:1002:No home::/bin/sh
short:x:1003
1234:x:1004:1004::/home/digits:/bin/sh
big:x:4294967294:4294967294::/home/big:/bin/sh
neg:x:-1:-1::/home/neg:/bin/sh
";

    const GROUP: &str = "\
root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
wheel:x:10:root,alice
# comment:x:11:alice
users:x:100:alice,bob
  staff:x:50:alice  
empty:x:60:
5000:x:70:
bigg:x:4294967294:
negg:x:-5:
";

    fn ok(uid: u32, gid: u32, additional: &[u32], home: &str) -> Want {
        Ok(ExecUser {
            uid,
            gid,
            additional_gids: additional.to_vec(),
            home: home.to_owned(),
        })
    }

    fn not_user(name: &str) -> Want {
        Err(UserError::UserNotFound(name.to_owned()))
    }

    fn not_group(name: &str) -> Want {
        Err(UserError::GroupNotFound(name.to_owned()))
    }

    #[test]
    fn with_both_files() {
        let cases: &[(&str, Want)] = &[
            ("", ok(0, 0, &[0, 0, 1, 2, 10], "/root")),
            (":", ok(0, 0, &[0, 0, 1, 2, 10], "/root")),
            ("root", ok(0, 0, &[0, 0, 1, 2, 10], "/root")),
            ("0", ok(0, 0, &[0, 0, 1, 2, 10], "/root")),
            ("+0", ok(0, 0, &[0, 0, 1, 2, 10], "/root")),
            ("-0", ok(0, 0, &[0, 0, 1, 2, 10], "/root")),
            ("alice", ok(1000, 1000, &[1000, 10, 100, 50], "/home/alice")),
            ("1000", ok(1000, 1000, &[1000, 10, 100, 50], "/home/alice")),
            ("bob", ok(1001, 1001, &[1001, 100], "/home/bob")),
            // An explicit group replaces the primary gid and drops the supplementary groups.
            ("alice:users", ok(1000, 100, &[100], "/home/alice")),
            ("alice:100", ok(1000, 100, &[100], "/home/alice")),
            ("alice:4242", ok(1000, 4242, &[4242], "/home/alice")),
            (
                "alice:",
                ok(1000, 1000, &[1000, 10, 100, 50], "/home/alice"),
            ),
            ("1000:wheel", ok(1000, 10, &[10], "/home/alice")),
            (":wheel", ok(0, 10, &[10], "/root")),
            // Extra fields are ignored.
            ("alice:users:junk", ok(1000, 100, &[100], "/home/alice")),
            // A uid with no entry: gid 0, no groups, HOME "/".
            ("4242", ok(4242, 0, &[0], "/")),
            ("4242:4243", ok(4242, 4243, &[4243], "/")),
            ("4242:wheel", ok(4242, 10, &[10], "/")),
            ("2147483647", ok(2147483647, 0, &[0], "/")),
            // Numeric specs are never names: "1234" is uid 1234, not the user named "1234".
            ("1234", ok(1234, 0, &[0], "/")),
            ("1004", ok(1004, 1004, &[1004], "/home/digits")),
            // A numeric gid matches by gid, never the group named "5000".
            ("alice:5000", ok(1000, 5000, &[5000], "/home/alice")),
            // HOME comes from the first entry with the uid, not the entry named.
            ("toor", ok(0, 0, &[0], "/root")),
            // An empty home field gives an empty HOME, as runc does.
            ("nohome", ok(1002, 1002, &[1002], "")),
            // Missing fields are empty or 0.
            ("short", ok(1003, 0, &[0], "")),
            // Ids from the files are not range-checked, just converted as Go does.
            (
                "big",
                ok(4294967294, 4294967294, &[4294967294], "/home/big"),
            ),
            ("neg", ok(u32::MAX, u32::MAX, &[u32::MAX], "/")),
            (
                "alice:bigg",
                ok(1000, 4294967294, &[4294967294], "/home/alice"),
            ),
            // Names must exist.
            ("nobody", not_user("nobody")),
            ("nobody:wheel", not_user("nobody")),
            ("ROOT", not_user("ROOT")),
            (" root", not_user(" root")),
            ("0x10", not_user("0x10")),
            ("-abc", not_user("-abc")),
            ("alice:nogroup", not_group("nogroup")),
            ("4242:nogroup", not_group("nogroup")),
            // Comment lines in /etc/group are skipped.
            ("alice:# comment", not_group("# comment")),
            ("alice:11", ok(1000, 11, &[11], "/home/alice")),
            // Trimmed lines match.
            ("alice:staff", ok(1000, 50, &[50], "/home/alice")),
            // Out of range ids in the spec.
            ("-1", Err(UserError::Range)),
            ("2147483648", Err(UserError::Range)),
            ("99999999999999999999", Err(UserError::Range)),
            ("99999999999999999999x", Err(UserError::Range)),
            ("alice:-1", Err(UserError::Range)),
            ("alice:2147483648", Err(UserError::Range)),
            ("nobody:-1", Err(UserError::Range)),
        ];
        for (spec, want) in cases {
            assert_eq!(
                &resolve(spec, Some(PASSWD), Some(GROUP), &[]),
                want,
                "spec {spec:?}"
            );
        }
    }

    #[test]
    fn missing_files() {
        let cases: &[(&str, Option<&str>, Option<&str>, Want)] = &[
            ("", None, None, ok(0, 0, &[0], "/")),
            ("0", None, None, ok(0, 0, &[0], "/")),
            ("1000", None, None, ok(1000, 0, &[0], "/")),
            ("1000:1000", None, None, ok(1000, 1000, &[1000], "/")),
            ("root", None, None, not_user("root")),
            ("1000:staff", None, None, not_group("staff")),
            (
                "alice",
                Some(PASSWD),
                None,
                ok(1000, 1000, &[1000], "/home/alice"),
            ),
            (
                "alice:10",
                Some(PASSWD),
                None,
                ok(1000, 10, &[10], "/home/alice"),
            ),
            ("alice:wheel", Some(PASSWD), None, not_group("wheel")),
            ("", None, Some(GROUP), ok(0, 0, &[0], "/")),
            ("0:wheel", None, Some(GROUP), ok(0, 10, &[10], "/")),
            ("", Some(""), Some(""), ok(0, 0, &[0], "/")),
            ("root", Some(""), Some(""), not_user("root")),
        ];
        for (spec, passwd, group, want) in cases {
            assert_eq!(
                &resolve(spec, *passwd, *group, &[]),
                want,
                "spec {spec:?} passwd {passwd:?} group {group:?}"
            );
        }
    }

    #[test]
    fn group_add() {
        let cases: &[(&str, &[&str], Option<&str>, Want)] = &[
            (
                "",
                &["wheel"],
                Some(GROUP),
                ok(0, 0, &[0, 0, 1, 2, 10, 10], "/root"),
            ),
            (
                "bob",
                &["wheel", "5000", "users"],
                Some(GROUP),
                ok(1001, 1001, &[1001, 100, 10, 5000, 100], "/home/bob"),
            ),
            (
                "bob",
                &["10", "wheel", "10"],
                Some(GROUP),
                ok(1001, 1001, &[1001, 100, 10], "/home/bob"),
            ),
            (
                "bob",
                &["5000"],
                None,
                ok(1001, 1001, &[1001, 5000], "/home/bob"),
            ),
            ("4242", &["staff"], Some(GROUP), ok(4242, 0, &[0, 50], "/")),
            ("4242", &["staff"], None, not_group("staff")),
            ("4242", &["nogroup"], Some(GROUP), not_group("nogroup")),
            ("4242", &["# comment"], Some(GROUP), not_group("# comment")),
            ("4242", &["-1"], Some(GROUP), Err(UserError::Range)),
            ("4242", &["2147483648"], None, Err(UserError::Range)),
            // A group found by name or number must have an in-range gid.
            ("4242", &["bigg"], Some(GROUP), Err(UserError::Range)),
            ("4242", &["negg"], Some(GROUP), Err(UserError::Range)),
            // A range error in any argument comes before a missing name.
            (
                "4242",
                &["nogroup", "-1"],
                Some(GROUP),
                Err(UserError::Range),
            ),
            // Errors in the spec come first.
            ("nobody", &["-1"], Some(GROUP), not_user("nobody")),
        ];
        for (spec, extra, group, want) in cases {
            let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            assert_eq!(
                &resolve(spec, Some(PASSWD), *group, &extra),
                want,
                "spec {spec:?} extra {extra:?}"
            );
        }
    }

    #[test]
    fn passwd_quirks() {
        let cases: &[(&str, &str, Want)] = &[
            // Blank lines, surrounding space and CRLF endings.
            (
                "\n\n  root:x:0:0:root:/root:/bin/sh  \r\n\n",
                "root",
                ok(0, 0, &[0], "/root"),
            ),
            // runc does not skip comments in passwd: this one is an entry with uid 0.
            (
                "# users\nroot:x:0:0:root:/root:/bin/sh\n",
                "",
                ok(0, 0, &[0], ""),
            ),
            (
                "# users\nroot:x:0:0:root:/root:/bin/sh\n",
                "root",
                ok(0, 0, &[0], ""),
            ),
            ("# a:b:5:6::/c\n", "# a", ok(5, 6, &[6], "/c")),
            // Unparsable numbers are 0.
            (
                "odd:x:abc:def::/odd:\nroot:x:0:0::/root:\n",
                "odd",
                ok(0, 0, &[0], "/odd"),
            ),
            (
                "root:x:0:0::/root:\nodd:x:abc:def::/odd:\n",
                "odd",
                ok(0, 0, &[0], "/root"),
            ),
            // The first of several entries with one name wins.
            (
                "a:x:5:5::/one:\na:x:6:6::/two:\n",
                "a",
                ok(5, 5, &[5], "/one"),
            ),
            (
                "a:x:5:5::/one:\na:x:6:6::/two:\n",
                "6",
                ok(6, 6, &[6], "/two"),
            ),
            // A name with no line ending, and a "+" sign in the file.
            ("a:x:+7:7::/h:", "a", ok(7, 7, &[7], "/h")),
            // Overflowing numbers in the file clamp, then truncate to 32 bits.
            (
                "a:x:99999999999999999999:1::/h:",
                "a",
                ok(u32::MAX, 1, &[1], "/"),
            ),
            // Extra fields are ignored.
            (
                "a:x:8:8:g:/h:/bin/sh:more:fields",
                "a",
                ok(8, 8, &[8], "/h"),
            ),
        ];
        for (passwd, spec, want) in cases {
            assert_eq!(
                &resolve(spec, Some(passwd), None, &[]),
                want,
                "spec {spec:?} passwd {passwd:?}"
            );
        }

        // An entry with an empty name has no supplementary groups, even from a group
        // listing an empty member.
        let group = "g:x:9:a,,b\n";
        assert_eq!(
            resolve("5", Some(":x:5:5::/h:"), Some(group), &[]),
            ok(5, 5, &[5], "/h")
        );
        assert_eq!(
            resolve("a", Some("a:x:5:5::/h:"), Some(group), &[]),
            ok(5, 5, &[5, 9], "/h")
        );
    }

    #[test]
    fn group_quirks() {
        let passwd = "alice:x:1000:1000::/home/alice:\n";
        let cases: &[(&str, &str, Want)] = &[
            // Members are compared exactly: " alice" is not "alice".
            (
                "a:x:1:bob, alice\nb:x:2:bob,alice\n",
                "alice",
                ok(1000, 1000, &[1000, 2], "/home/alice"),
            ),
            // Comments are skipped, even after leading space.
            (
                "  # c:x:3:alice\n",
                "alice",
                ok(1000, 1000, &[1000], "/home/alice"),
            ),
            // Every group listing the user, in file order, duplicates kept.
            (
                "a:x:7:alice\nb:x:3:alice\nc:x:7:alice\n",
                "alice",
                ok(1000, 1000, &[1000, 7, 3, 7], "/home/alice"),
            ),
            // The first group with a name wins; unparsable gids are 0.
            (
                "g:x:8:\ng:x:9:\n",
                "alice:g",
                ok(1000, 8, &[8], "/home/alice"),
            ),
            ("g:x:zz:\n", "alice:g", ok(1000, 0, &[0], "/home/alice")),
            ("g\n", "alice:g", ok(1000, 0, &[0], "/home/alice")),
            ("g:x:0:\n", "alice:0", ok(1000, 0, &[0], "/home/alice")),
        ];
        for (group, spec, want) in cases {
            assert_eq!(
                &resolve(spec, Some(passwd), Some(group), &[]),
                want,
                "spec {spec:?} group {group:?}"
            );
        }
    }

    #[test]
    fn oversized_files() {
        let long = format!("x:x:5:5::/h:{}\n", "s".repeat(MAX_PASSWD_LINE));
        let passwd = format!("root:x:0:0::/root:\n{long}");
        assert_eq!(
            resolve("", Some(&passwd), None, &[]),
            Err(UserError::Passwd {
                user: "0".into(),
                cause: FileProblem::LineTooLong
            })
        );
        assert_eq!(
            resolve("root", Some(&passwd), None, &[])
                .unwrap_err()
                .to_string(),
            "unable to find user root: bufio.Scanner: token too long"
        );
        // One byte shorter is fine.
        let fits = format!("a:x:5:5::/h:{}\n", "s".repeat(MAX_PASSWD_LINE - 13));
        assert_eq!(fits.len(), MAX_PASSWD_LINE);
        assert_eq!(resolve("a", Some(&fits), None, &[]), ok(5, 5, &[5], "/h"));

        // Group lines may be longer, up to 1 MiB.
        let group = format!("g:x:9:{}alice\n", "m,".repeat(100_000));
        let passwd = "alice:x:1000:1000::/home/alice:\n";
        assert_eq!(
            resolve("alice", Some(passwd), Some(&group), &[]),
            ok(1000, 1000, &[1000, 9], "/home/alice")
        );
        let group = format!("g:x:9:{}alice\n", "m,".repeat(MAX_GROUP_LINE / 2));
        assert_eq!(
            resolve("alice", Some(passwd), Some(&group), &[]),
            Err(UserError::Group {
                user: "alice".into(),
                cause: FileProblem::LineTooLong
            })
        );
        // Not read at all when no group lookup is needed.
        assert_eq!(
            resolve("4242", Some(passwd), Some(&group), &[]),
            ok(4242, 0, &[0], "/")
        );
        let extra = vec!["a".to_owned(), "5".to_owned()];
        let err = resolve("4242", Some(passwd), Some(&group), &extra).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find additional groups [a 5]: bufio.Scanner: token too long"
        );

        let huge = "\n".repeat(MAX_FILE_BYTES + 1);
        assert_eq!(
            resolve("", Some(&huge), None, &[]).unwrap_err().to_string(),
            format!("unable to find user 0: file exceeds {MAX_FILE_BYTES} bytes")
        );
        let huge_group = format!("{huge}g:x:9:\n");
        assert_eq!(
            resolve("alice", Some(passwd), Some(&huge_group), &[]),
            Err(UserError::Group {
                user: "alice".into(),
                cause: FileProblem::TooLarge
            })
        );
        // `--group-add` reads the group file without the cap.
        assert_eq!(
            resolve("4242", Some(passwd), Some(&huge_group), &["g".to_owned()]),
            ok(4242, 0, &[0, 9], "/")
        );
        let exact = "\n".repeat(MAX_FILE_BYTES);
        assert_eq!(resolve("", Some(&exact), None, &[]), ok(0, 0, &[0], "/"));
    }

    #[test]
    fn messages() {
        let cases: &[(UserError, &str)] = &[
            (
                UserError::UserNotFound("nobody".into()),
                "unable to find user nobody: no matching entries in passwd file",
            ),
            (
                UserError::GroupNotFound("staff".into()),
                "unable to find group staff: no matching entries in group file",
            ),
            (
                UserError::Range,
                "uids and gids must be in range 0-2147483647",
            ),
            (
                UserError::Group {
                    user: "alice".into(),
                    cause: FileProblem::TooLarge,
                },
                "unable to find groups for spec alice: file exceeds 10485760 bytes",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), *want);
        }
    }

    #[test]
    fn go_atoi() {
        let cases: &[(&str, Atoi)] = &[
            ("0", Atoi::Ok(0)),
            ("42", Atoi::Ok(42)),
            ("+42", Atoi::Ok(42)),
            ("-42", Atoi::Ok(-42)),
            ("007", Atoi::Ok(7)),
            ("", Atoi::Syntax),
            ("+", Atoi::Syntax),
            ("-", Atoi::Syntax),
            ("1_000", Atoi::Syntax),
            (" 1", Atoi::Syntax),
            ("1 ", Atoi::Syntax),
            ("0x1", Atoi::Syntax),
            ("--1", Atoi::Syntax),
            ("9223372036854775807", Atoi::Ok(i64::MAX)),
            ("9223372036854775808", Atoi::Range(i64::MAX)),
            ("-9223372036854775808", Atoi::Ok(i64::MIN)),
            ("-9223372036854775809", Atoi::Range(i64::MIN)),
            ("18446744073709551616", Atoi::Range(i64::MAX)),
            ("-99999999999999999999", Atoi::Range(i64::MIN)),
            ("99999999999999999999x", Atoi::Range(i64::MAX)),
            ("x99999999999999999999", Atoi::Syntax),
        ];
        for (s, want) in cases {
            assert_eq!(atoi(s), *want, "{s:?}");
        }
    }
}
