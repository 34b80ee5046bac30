//! docs/catalog.md, generated from the code that defines it: the join checklist, every cause
//! code, every fix kind, and the NJ checks nodemedic does not run.

use std::fmt::Write as _;

use crate::core::checks::{Cause, CheckId, NOT_CHECKED};
use crate::core::plan::FixKind;

pub fn catalog_markdown() -> String {
    let mut out = String::from(
        "# nodemedic catalog\n\nCheck ids, cause codes and fix kinds are part of nodemedic's public interface: they \
         appear in audit records, JSON output and metrics labels, and never change meaning. This file is generated \
         by `nodemedic catalog`; a test keeps it in step with the code.\n",
    );
    checks(&mut out);
    out.push_str("\n## Cause codes\n");
    for cause in Cause::ALL {
        let doc = cause.doc();
        let _ = write!(
            out,
            "\n### `{}`\n\n{}.\n\n- **Check:** `{}`\n- **Evidence:** {}\n- **Remedy:** {}\n",
            cause.code(),
            doc.title,
            CheckId::of(*cause),
            doc.evidence,
            doc.remedy
        );
    }
    out.push_str("\n## Fix kinds\n");
    for fix in FixKind::ALL {
        let _ = write!(out, "\n### `{}`\n\n{}\n", fix.code(), fix.describe());
    }
    not_checked(&mut out);
    out
}

/// The checklist: each check's id, the NJ checks it covers and the causes it decides (each
/// cause's evidence and remedy are under "Cause codes").
fn checks(out: &mut String) {
    out.push_str(
        "\n## Checks\n\nEvery diagnosis runs the whole checklist. A check **fails** when it finds a blocking \
         cause, **warns** when it finds only warnings, **passes** when its evidence was collected and showed \
         nothing wrong, and is **skipped** with a reason otherwise: the evidence is not collected for this \
         trigger, the check does not apply to this nodegroup, or the API call it needs was denied (never a \
         pass). NJ ids are the checks of the AWS DevOps Agent's `eks-node-join-diagnostic` skill a check \
         covers.\n\n| check | NJ | what passes | causes |\n|---|---|---|---|\n",
    );
    for check in CheckId::ALL {
        let causes: Vec<String> = check
            .causes()
            .iter()
            .map(|cause| format!("`{cause}`"))
            .collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            check.id(),
            check.nj().join(", "),
            check.title(),
            causes.join(", ")
        );
    }
}

/// The NJ checks no nodemedic check covers, and why.
fn not_checked(out: &mut String) {
    out.push_str(
        "\n## NJ checks nodemedic does not run\n\n| NJ | check | why not |\n|---|---|---|\n",
    );
    for unseen in NOT_CHECKED {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            unseen.nj,
            unseen.title,
            unseen.why.explain()
        );
    }
}
