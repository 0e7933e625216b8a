//! A simple shrinker: replays the diverging client's script alone, then drops earlier steps
//! (a glued pair together) while the run still diverges at the same last step, within a
//! budget of runs.

use super::runner::{run_scripts, At, Divergence, RunSpec};
use super::script::{Script, Step};
use super::DiffError;
use crate::testbed::Bed;

/// A smaller divergence reached by the diverging client alone, or `None` when it does not
/// diverge alone (it needs the other clients) within `budget` runs.
pub async fn shrink(
    bed: &Bed,
    spec: &RunSpec,
    found: &Divergence,
    budget: usize,
) -> Result<Option<Divergence>, DiffError> {
    let At::Step(step) = found.at else {
        return Ok(None);
    };
    let mut runs = 0;
    let mut script = found.script.clone();
    script.steps.truncate(step + 1);
    let Some(mut best) = alone(bed, spec, &script, &mut runs).await? else {
        return Ok(None);
    };
    // Every group but the last (which holds the diverging step) may go.
    let droppable = |s: &Script| groups(&s.steps).len().saturating_sub(1);
    let mut chunk = droppable(&best.script).div_ceil(2);
    while chunk >= 1 && runs < budget {
        let mut removed_any = false;
        let mut at = 0;
        while at < droppable(&best.script) && runs < budget {
            let count = chunk.min(droppable(&best.script) - at);
            let candidate = without(&best.script, at, count);
            match alone(bed, spec, &candidate, &mut runs).await? {
                Some(smaller) => {
                    best = smaller;
                    removed_any = true;
                }
                None => at += chunk,
            }
        }
        if !removed_any {
            chunk /= 2;
        }
    }
    Ok(Some(best))
}

/// Runs `script` as the only client: its divergence, if the answers differ at its last
/// step (the step that diverged first), so the shrunk script keeps the original failure
/// rather than one its cut made.
async fn alone(
    bed: &Bed,
    spec: &RunSpec,
    script: &Script,
    runs: &mut usize,
) -> Result<Option<Divergence>, DiffError> {
    *runs += 1;
    let outcome = run_scripts(bed, spec, vec![script.clone()]).await?;
    let last = script.steps.len().checked_sub(1).map(At::Step);
    Ok(outcome.divergence.filter(|d| Some(d.at) == last))
}

/// Step ranges that stay together: a glued step with the step that finishes its batch.
fn groups(steps: &[Step]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, step) in steps.iter().enumerate() {
        if !step.glued {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < steps.len() {
        out.push(start..steps.len());
    }
    out
}

/// `script` without `count` groups from group `at`.
fn without(script: &Script, at: usize, count: usize) -> Script {
    let groups = groups(&script.steps);
    let drop: Vec<usize> = groups
        .iter()
        .skip(at)
        .take(count)
        .flat_map(|r| r.clone())
        .collect();
    let steps = script
        .steps
        .iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, s)| s.clone())
        .collect();
    Script {
        steps,
        ..script.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testbed::differential::script::Identity;

    fn step(glued: bool) -> Step {
        Step {
            glued,
            ..Step::query("SELECT 1")
        }
    }

    #[test]
    fn a_glued_step_stays_with_the_step_that_finishes_its_batch() {
        let steps = [step(false), step(true), step(false), step(false)];
        assert_eq!(groups(&steps), vec![0..1, 1..3, 3..4]);
        let script = Script {
            client: 0,
            identity: Identity::Alice,
            startup: vec![],
            steps: steps.to_vec(),
        };
        assert_eq!(without(&script, 1, 1).steps.len(), 2);
    }
}
