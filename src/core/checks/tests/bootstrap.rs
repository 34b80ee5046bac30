//! User data as EC2 reads it, and the bootstrap rules of custom AMIs.

use super::causes;
use crate::core::checks::bootstrap::{Bootstrap, bootstraps, parts};
use crate::core::checks::*;
use crate::core::evidence::{Evidence, ImageLookup};

const AL2023_AMI: &str = "amazon-eks-node-al2023-x86_64-standard-1.33-v20251016";
const AL2_AMI: &str = "amazon-eks-node-1.32-v20251016";

fn mime(parts: &[(&str, &str)]) -> String {
    let mut text =
        String::from("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BOUNDARY\"\n\n");
    for (content_type, body) in parts {
        text.push_str(&format!(
            "--BOUNDARY\nContent-Type: {content_type}\n\n{body}\n"
        ));
    }
    text.push_str("--BOUNDARY--\n");
    text
}

fn node_config(name: &str, complete: bool) -> String {
    let mut text = format!(
        "---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: {name}\n"
    );
    if complete {
        text.push_str(
            "    apiServerEndpoint: https://ABC.gr7.us-west-2.eks.amazonaws.com\n    certificateAuthority: LS0tLS1CRUdJTg==\n    cidr: 10.100.0.0/16\n",
        );
    }
    text
}

fn custom(ami_name: &str, user_data: &str) -> Evidence {
    let user_data = user_data.to_string();
    let mut evidence = Evidence::healthy().template(move |t| {
        t.image_id = Some("ami-custom".into());
        t.user_data = Some(user_data.clone());
    });
    evidence.nodegroup.ami_type = Some("CUSTOM".into());
    evidence.image = Some(ImageLookup::Found {
        image_id: "ami-custom".into(),
        state: "available".into(),
        name: Some(ami_name.into()),
        root_device_name: None,
        root_snapshot_gib: None,
    });
    evidence
}

#[test]
fn mime_parts_and_their_node_configs_are_read() {
    let text = mime(&[
        (
            "application/node.eks.aws",
            &node_config("eks-workshop", true),
        ),
        (
            "text/x-shellscript; charset=\"us-ascii\"",
            "#!/bin/bash\necho hi",
        ),
    ]);
    let read = parts(&text);
    assert_eq!(read.len(), 2, "{read:?}");
    assert_eq!(read[0].content_type, "application/node.eks.aws");
    assert_eq!(
        bootstraps(&text),
        vec![Bootstrap::NodeConfig {
            name: Some("eks-workshop".into()),
            api_server_endpoint: true,
            certificate_authority: true,
            cidr: true,
        }]
    );
}

#[test]
fn a_base64_encoded_part_is_decoded_as_cloud_init_would() {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(node_config("other", false));
    let text = format!(
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: application/node.eks.aws\nContent-Transfer-Encoding: base64\n\n{encoded}\n--B--\n"
    );
    assert!(matches!(
        bootstraps(&text).as_slice(),
        [Bootstrap::NodeConfig { name: Some(name), .. }] if name == "other"
    ));
}

#[test]
fn bootstrap_script_arguments_are_read_with_shell_quoting() {
    let text = "#!/bin/bash\nset -ex\n/etc/eks/bootstrap.sh eks-workshop --kubelet-extra-args '--node-labels=a=b c' --apiserver-endpoint https://x --b64-cluster-ca=abc\n";
    assert_eq!(
        bootstraps(text),
        vec![Bootstrap::Script {
            cluster: Some("eks-workshop".into()),
            apiserver_endpoint: true,
            cluster_ca: true,
        }]
    );
    let variable = "/etc/eks/bootstrap.sh ${CLUSTER_NAME}";
    assert!(matches!(
        bootstraps(variable).as_slice(),
        [Bootstrap::Script { cluster: None, .. }]
    ));
}

#[test]
fn an_al2023_ami_with_a_bootstrap_script_is_the_wrong_format() {
    let evidence = custom(
        AL2023_AMI,
        "#!/bin/bash\n/etc/eks/bootstrap.sh eks-workshop\n",
    );
    assert_eq!(causes(&evidence), vec![Cause::UserDataFormatMismatch]);
    let al2 = custom(
        AL2_AMI,
        &mime(&[(
            "application/node.eks.aws",
            &node_config("eks-workshop", true),
        )]),
    );
    assert!(causes(&al2).contains(&Cause::UserDataFormatMismatch));
}

#[test]
fn an_al2023_ami_with_a_complete_node_config_for_this_cluster_passes() {
    let evidence = custom(
        AL2023_AMI,
        &mime(&[(
            "application/node.eks.aws",
            &node_config("eks-workshop", true),
        )]),
    );
    assert!(causes(&evidence).is_empty(), "{:?}", causes(&evidence));
    let check = diagnose(&evidence)
        .checks
        .into_iter()
        .find(|c| c.check == CheckId::UserData)
        .expect("check");
    assert_eq!(check.result, CheckStatus::Pass);
}

#[test]
fn another_clusters_name_and_missing_node_config_fields_are_found() {
    let other = custom(
        AL2023_AMI,
        &mime(&[(
            "application/node.eks.aws",
            &node_config("Eks-Workshop", true),
        )]),
    );
    assert_eq!(causes(&other), vec![Cause::BootstrapClusterNameMismatch]);
    let incomplete = custom(
        AL2023_AMI,
        &mime(&[(
            "application/node.eks.aws",
            &node_config("eks-workshop", false),
        )]),
    );
    assert_eq!(causes(&incomplete), vec![Cause::BootstrapArgsMissing]);
}

#[test]
fn a_private_cluster_needs_the_endpoint_and_ca_in_bootstrap_sh() {
    let private = |line: &str| {
        custom(AL2_AMI, line).cluster(|c| {
            c.endpoint_public_access = false;
            c.endpoint_private_access = true;
        })
    };
    let bare = private("/etc/eks/bootstrap.sh eks-workshop");
    assert!(causes(&bare).contains(&Cause::BootstrapArgsMissing));
    let complete = private(
        "/etc/eks/bootstrap.sh eks-workshop --apiserver-endpoint https://x --b64-cluster-ca abc",
    );
    assert!(!causes(&complete).contains(&Cause::BootstrapArgsMissing));
    let public = custom(AL2_AMI, "/etc/eks/bootstrap.sh eks-workshop");
    assert!(!causes(&public).contains(&Cause::BootstrapArgsMissing));
}

#[test]
fn user_data_over_16_kib_is_refused() {
    let mut evidence = custom(
        AL2023_AMI,
        &mime(&[(
            "application/node.eks.aws",
            &node_config("eks-workshop", true),
        )]),
    );
    if let Some(crate::core::evidence::TemplateLookup::Found(t)) = &mut evidence.launch_template {
        t.user_data_bytes = Some(16 * 1024 + 1);
    }
    assert_eq!(causes(&evidence), vec![Cause::UserDataTooLarge]);
}
