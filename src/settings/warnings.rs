//! Settings that are valid but probably not what was meant: `nodemedic config check` prints
//! these, and `run` logs them at start.

use super::*;

impl Settings {
    /// Usable but probably not what was meant: `nodemedic config check` prints these.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let mutates = matches!(self.mode, Mode::Approve | Mode::Auto);
        if self.queue_url.is_empty() {
            warnings.push(
                "queue_url is empty: `nodemedic run` refuses to start without a queue".into(),
            );
        }
        if self.scope.ignore_tag.is_empty() {
            warnings.push(
                "scope.ignore_tag is empty: no route table, key or nodegroup can opt out of fixes"
                    .into(),
            );
        }
        if mutates && self.guard.max_mutations_per_hour == 0 {
            warnings.push(format!(
                "guard.max_mutations_per_hour is 0: in {} mode no fix will ever be applied",
                self.mode
            ));
        }
        if !self.http.address.is_empty() && self.http.tokens.is_empty() {
            warnings.push(format!(
                "http.address is {} but http.tokens is empty: the approvals API refuses every request",
                self.http.address
            ));
        }
        if self.http.console && self.http.address.is_empty() {
            warnings.push(
                "http.console is on but http.address is empty: the console is not served".into(),
            );
        } else if self.http.console && self.http.tokens.is_empty() {
            warnings.push(
                "http.console is on but http.tokens is empty: nobody can sign in to the console"
                    .into(),
            );
        }
        let accounts = &self.accounts;
        if accounts.hub_and_spoke() && accounts.members.is_empty() {
            warnings.push(format!(
                "accounts.role_name is {:?} but accounts.members is empty: only this account is served",
                accounts.role_name
            ));
        }
        if accounts.hub_and_spoke() && accounts.external_id.is_empty() {
            warnings.push(
                "accounts.external_id is empty: member roles cannot require an external id from this daemon"
                    .into(),
            );
        }
        if !accounts.hub_and_spoke() && !accounts.external_id.is_empty() {
            warnings.push(
                "accounts.external_id is set but accounts.role_name is empty: no role is assumed"
                    .into(),
            );
        }
        let asks_for_approval = self.mode == Mode::Approve
            || (self.mode == Mode::Auto
                && FixKind::ALL
                    .iter()
                    .any(|fix| self.policy().fix_policy(*fix) == FixPolicy::Approve));
        if asks_for_approval
            && self.notify.webhooks.is_empty()
            && self.notify.sns_topic_arn.is_empty()
        {
            warnings.push(
                "plans will wait for approval but no webhook or SNS topic tells anyone (`nodemedic plans list` shows them)"
                    .into(),
            );
        }
        warnings
    }
}
