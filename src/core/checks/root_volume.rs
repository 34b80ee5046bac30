//! The nodes' root volume: never smaller than the AMI's snapshot (EC2 refuses the launch), and
//! not so small that images and logs fill it (kubelet then evicts pods and reports DiskPressure).

use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::{Evidence, ImageLookup};

/// Below this, container images and logs soon fill the disk (EKS's own default is 20 GiB).
pub const SMALL_ROOT_GIB: i32 = 20;

/// The root volume's size, where it was set, and the smallest size its AMI allows when known.
pub struct RootVolume {
    pub size_gib: i32,
    pub source: String,
    pub snapshot_gib: Option<i32>,
}

/// The size the nodes' root volume gets: the launch template's mapping of the root device, else
/// the nodegroup's diskSize; `None` when the AMI's own size applies.
pub fn root_volume(evidence: &Evidence) -> Option<RootVolume> {
    let Some(template) = evidence.launch_template_facts() else {
        return evidence.nodegroup.disk_size.map(|size_gib| RootVolume {
            size_gib,
            source: format!("nodegroup {} diskSize", evidence.nodegroup.name),
            snapshot_gib: None,
        });
    };
    let (image_root, snapshot_gib) = match &evidence.image {
        Some(ImageLookup::Found {
            root_device_name,
            root_snapshot_gib,
            ..
        }) => (root_device_name.clone(), *root_snapshot_gib),
        _ => (None, None),
    };
    // EKS AMIs boot from /dev/xvda; Bottlerocket keeps images and pods on /dev/xvdb.
    let bottlerocket = evidence
        .nodegroup
        .ami_type
        .as_deref()
        .is_some_and(|t| t.starts_with("BOTTLEROCKET"));
    let root = image_root.unwrap_or_else(|| {
        if bottlerocket {
            "/dev/xvdb"
        } else {
            "/dev/xvda"
        }
        .to_string()
    });
    let volume = template.volumes.iter().find(|v| v.device_name == root)?;
    Some(RootVolume {
        size_gib: volume.size_gib?,
        source: format!(
            "launch template {} version {} {root}",
            template.id, template.version
        ),
        snapshot_gib,
    })
}

pub fn findings(evidence: &Evidence) -> Vec<Finding> {
    let Some(root) = root_volume(evidence) else {
        return Vec::new();
    };
    let size = root.size_gib;
    let (blocking, why) = match root.snapshot_gib {
        Some(snapshot) if size < snapshot => (
            true,
            format!(
                "EC2 refuses a volume smaller than its snapshot ({snapshot} GiB), so every launch fails"
            ),
        ),
        _ if size < SMALL_ROOT_GIB => (
            false,
            format!(
                "container images and logs soon fill it; kubelet then reports DiskPressure and evicts pods \
                 (EKS gives nodes {SMALL_ROOT_GIB} GiB by default)"
            ),
        ),
        _ => return Vec::new(),
    };
    let mut facts = vec![Fact::new(&root.source, format!("VolumeSize={size} GiB"))];
    if let Some(snapshot) = root.snapshot_gib {
        facts.push(Fact::new("AMI root snapshot", format!("{snapshot} GiB")));
    }
    let wanted = root.snapshot_gib.unwrap_or(0).max(SMALL_ROOT_GIB).max(30);
    vec![Finding {
        cause: Cause::RootVolumeTooSmall,
        blocking,
        summary: format!("the nodes' root volume is {size} GiB"),
        explanation: format!("The root volume ({}) is {size} GiB: {why}.", root.source),
        evidence: facts,
        remedy: Some(format!(
            "Create a launch template version whose root device mapping has VolumeSize {wanted} or more (or set \
             the nodegroup's diskSize), then update the nodegroup to it"
        )),
        subject: Subject::Resource { id: root.source },
    }]
}
