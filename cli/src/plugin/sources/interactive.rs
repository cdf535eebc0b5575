//! `create --scratch` at a terminal without `--role`: the spec asked for, one prompt per field
//! the flags left open (role class, model, temperature, inputs, actions, memory, retention,
//! capabilities, budget), with the policy's limit beside the answers it bounds.
//!
//! A [`Wizard`] is a state machine over plain data (a question out, an answer in); [`ask`]
//! drives it over any reader and writer, so the command passes the terminal and the tests pass
//! bytes.

use std::io::{BufRead, Write};

use agentgov_api::agent::{MemoryKind, RoleClass};
use agentgov_api::policy_bundle::PolicyData;

use crate::plugin::create::{Scratch, parse_memory};
use crate::plugin::filter::parse_role;

/// The policy's limits a prompt shows, when a policy is known.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    pub data: Option<PolicyData>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Role,
    Model,
    Temperature,
    Inputs,
    Actions,
    Memory,
    Retention,
    Capabilities,
    Budget,
    Done,
}

const ORDER: [Step; 10] = [
    Step::Role,
    Step::Model,
    Step::Temperature,
    Step::Inputs,
    Step::Actions,
    Step::Memory,
    Step::Retention,
    Step::Capabilities,
    Step::Budget,
    Step::Done,
];

/// The answers so far and the field asked next.
#[derive(Clone, Debug)]
pub struct Wizard {
    step: Step,
    answers: Scratch,
    limits: Limits,
}

impl Wizard {
    /// A wizard asking for what `flags` leave open.
    pub fn new(flags: Scratch, limits: Limits) -> Self {
        let mut wizard = Wizard {
            step: Step::Role,
            answers: flags,
            limits,
        };
        if wizard.answered(Step::Role) {
            wizard.advance();
        }
        wizard
    }

    /// Whether the flags (or an earlier answer) already settle `step`.
    fn answered(&self, step: Step) -> bool {
        let a = &self.answers;
        match step {
            Step::Role => a.role.is_some(),
            Step::Model => a.model.is_some(),
            // Without a model there is no temperature to ask for.
            Step::Temperature => a.temperature.is_some() || a.model.is_none(),
            Step::Inputs => !a.inputs.is_empty(),
            Step::Actions => !a.actions.is_empty(),
            Step::Memory => a.memory.is_some(),
            Step::Retention => {
                a.retention_days.is_some() || a.memory != Some(MemoryKind::Persistent)
            }
            Step::Capabilities => !a.capabilities.is_empty(),
            Step::Budget => a.budget_usd.is_some(),
            Step::Done => false,
        }
    }

    /// On to the next step not yet answered.
    fn advance(&mut self) {
        let at = ORDER.iter().position(|s| *s == self.step).unwrap_or(0);
        self.step = ORDER[at + 1..]
            .iter()
            .copied()
            .find(|s| *s == Step::Done || !self.answered(*s))
            .unwrap_or(Step::Done);
    }

    /// The question for the current field, with the policy's limit beside it; none when done.
    pub fn question(&self) -> Option<String> {
        let data = self.limits.data.as_ref();
        let text = match self.step {
            Step::Role => "Role class (compliance, analysis, ideation)".to_string(),
            Step::Model => "Model (empty: none)".to_string(),
            Step::Temperature => {
                let limit = match (data, self.answers.role) {
                    (Some(d), Some(role)) => format!(
                        " [policy: at most {} for {}]",
                        temperature_limit(d, role),
                        role.as_str()
                    ),
                    _ => String::new(),
                };
                format!("Temperature, 0 to 2{limit}")
            }
            Step::Inputs => "Inputs, comma-separated (empty: none) [policy: at least one]".into(),
            Step::Actions => "Actions, comma-separated (empty: none) [policy: at least one]".into(),
            Step::Memory => {
                "Memory: none, session or persistent (empty: none) [policy: required]".into()
            }
            Step::Retention => "Retention of persistent memory, in days (empty: none)".into(),
            Step::Capabilities => {
                "Capabilities, comma-separated (empty: none) [policy: at least one]".into()
            }
            Step::Budget => {
                let limit = data.map_or(String::new(), |d| {
                    format!(" [policy: at most {}]", d.max_monthly_budget_usd)
                });
                format!("Monthly budget in US dollars (empty: none){limit}")
            }
            Step::Done => return None,
        };
        Some(format!("{text}: "))
    }

    /// Take the answer to the current question: on to the next, or the sentence saying why
    /// the answer does not do (the same question is asked again). Returns a note to show
    /// (an answer above the policy's limit), if any.
    pub fn answer(&mut self, line: &str) -> Result<Option<String>, String> {
        let line = line.trim();
        let mut note = None;
        let a = &mut self.answers;
        match self.step {
            Step::Role => a.role = Some(parse_role(line)?),
            Step::Model => {
                if line.is_empty() {
                    self.step = Step::Temperature;
                    self.advance();
                    return Ok(None);
                }
                a.model = Some(line.to_string());
            }
            Step::Temperature => {
                let t: f64 = line
                    .parse()
                    .ok()
                    .filter(|t| (0.0..=2.0).contains(t))
                    .ok_or("give a number from 0 to 2")?;
                if let (Some(d), Some(role)) = (self.limits.data.as_ref(), a.role)
                    && t > temperature_limit(d, role)
                {
                    note = Some(format!(
                        "note: {t} is above the policy's limit for {}: a promotion would be denied",
                        role.as_str()
                    ));
                }
                a.temperature = Some(t);
            }
            Step::Inputs => a.inputs = list(line),
            Step::Actions => a.actions = list(line),
            Step::Memory if line.is_empty() => {}
            Step::Memory => a.memory = Some(parse_memory(line)?),
            Step::Retention if line.is_empty() => {}
            Step::Retention => {
                let days = line
                    .parse::<i32>()
                    .ok()
                    .filter(|d| *d >= 0)
                    .ok_or("give a whole number of days, 0 or more")?;
                a.retention_days = Some(days);
            }
            Step::Capabilities => a.capabilities = list(line),
            Step::Budget if line.is_empty() => {}
            Step::Budget => {
                let usd = line
                    .parse::<f64>()
                    .ok()
                    .filter(|b| *b >= 0.0 && b.is_finite())
                    .ok_or("give a number of US dollars, 0 or more")?;
                if let Some(d) = self.limits.data.as_ref()
                    && usd > d.max_monthly_budget_usd
                {
                    note = Some(format!(
                        "note: {usd} is above the policy's limit of {}: a promotion would be denied",
                        d.max_monthly_budget_usd
                    ));
                }
                a.budget_usd = Some(usd);
            }
            Step::Done => return Ok(None),
        }
        self.advance();
        Ok(note)
    }

    /// The flags with the answers filled in.
    pub fn finish(self) -> Scratch {
        self.answers
    }
}

fn temperature_limit(data: &PolicyData, role: RoleClass) -> f64 {
    let limits = &data.temperature_limits;
    match role {
        RoleClass::Compliance => limits.compliance,
        RoleClass::Analysis => limits.analysis,
        RoleClass::Ideation => limits.ideation,
    }
}

fn list(line: &str) -> Vec<String> {
    line.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Ask every open question on `output`, reading answers from `input`, until the wizard is
/// done; a wrong answer is said and asked again. Fails when `input` ends first.
pub fn ask(
    mut wizard: Wizard,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> Result<Scratch, String> {
    while let Some(question) = wizard.question() {
        write!(output, "{question}")
            .and_then(|()| output.flush())
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        let read = input.read_line(&mut line).map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("the input ended before every question was answered".into());
        }
        let shown = match wizard.answer(&line) {
            Ok(None) => continue,
            Ok(Some(note)) => note,
            Err(why) => why,
        };
        writeln!(output, "{shown}").map_err(|e| e.to_string())?;
    }
    Ok(wizard.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            data: Some(agentgov_api::policy::default_bundle_spec().data),
        }
    }

    #[test]
    fn every_open_field_is_asked_with_its_limit_and_wrong_answers_again() {
        let answers =
            "wizard\ncompliance\ngpt-4o\n3\n0.5\nerp, po\nflag\npersistent\n90\ncmp\n100000\n";
        let mut out = Vec::new();
        let scratch = ask(
            Wizard::new(Scratch::default(), limits()),
            &mut answers.as_bytes(),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Role class (compliance, analysis, ideation): "),
            "{text}"
        );
        assert!(
            text.contains("Temperature, 0 to 2 [policy: at most 0.3 for compliance]: "),
            "{text}"
        );
        assert!(text.contains("give a number from 0 to 2"), "{text}");
        assert!(
            text.contains("note: 0.5 is above the policy's limit for compliance"),
            "{text}"
        );
        assert!(text.contains("[policy: at most 1000]"), "{text}");
        assert!(
            text.contains("note: 100000 is above the policy's limit of 1000"),
            "{text}"
        );
        assert_eq!(scratch.role, Some(RoleClass::Compliance));
        assert_eq!(scratch.model.as_deref(), Some("gpt-4o"));
        assert_eq!(scratch.temperature, Some(0.5));
        assert_eq!(scratch.inputs, ["erp", "po"]);
        assert_eq!(scratch.actions, ["flag"]);
        assert_eq!(scratch.memory, Some(MemoryKind::Persistent));
        assert_eq!(scratch.retention_days, Some(90));
        assert_eq!(scratch.capabilities, ["cmp"]);
        assert_eq!(scratch.budget_usd, Some(100_000.0));
    }

    #[test]
    fn flags_given_are_not_asked_and_empty_answers_skip() {
        let flags = Scratch {
            model: Some("m".into()),
            temperature: Some(0.1),
            inputs: vec!["i".into()],
            ..Scratch::default()
        };
        // Role, actions, memory (empty: no retention asked), capabilities, budget.
        let answers = "analysis\n\n\n\n\n";
        let mut out = Vec::new();
        let scratch = ask(
            Wizard::new(flags, Limits::default()),
            &mut answers.as_bytes(),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("Model"), "{text}");
        assert!(!text.contains("Retention"), "{text}");
        assert!(
            !text.contains("[policy: at most"),
            "no policy, no limit: {text}"
        );
        assert_eq!(scratch.role, Some(RoleClass::Analysis));
        assert_eq!(scratch.inputs, ["i"]);
        assert!(scratch.actions.is_empty());
        assert_eq!(scratch.memory, None);
        // No model: no temperature asked.
        let mut wizard = Wizard::new(
            Scratch {
                role: Some(RoleClass::Ideation),
                ..Scratch::default()
            },
            Limits::default(),
        );
        assert!(wizard.question().unwrap().starts_with("Model"));
        wizard.answer("").unwrap();
        assert!(wizard.question().unwrap().starts_with("Inputs"));
        // The input ending early is an error.
        let error = ask(
            Wizard::new(Scratch::default(), Limits::default()),
            &mut "analysis\n".as_bytes(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(error.contains("input ended"), "{error}");
    }
}
