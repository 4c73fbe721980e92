//! Indexed completion mode (kube's `indexed_job_utils.go`): each pod carries its completion
//! index in the `batch.kubernetes.io/job-completion-index` annotation and label, sets of
//! indexes are kept as ordered intervals and written as `status.completedIndexes` ("0-2,4,6,7").

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec};

use crate::podutil;

pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// apiserver's names.MaxGeneratedNameLength: 63 minus the 5 random characters.
const MAX_GENERATED_NAME: usize = 58;

pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

/// The pod's completion index, `None` when missing, negative or not a number (kube's
/// unknownCompletionIndex).
pub fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(INDEX_KEY)?
        .parse::<i32>()
        .ok()
        .filter(|i| *i >= 0)
}

/// A set of indexes as ordered, non-adjacent, inclusive intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(Vec<(i32, i32)>);

impl Intervals {
    /// Parses a `completedIndexes`-style string, dropping indexes `>= completions` and
    /// corrupt parts (kube logs and skips them).
    pub fn parse(s: &str, completions: i32) -> Self {
        let mut out = Intervals::default();
        if s.is_empty() {
            return out;
        }
        for part in s.split(',') {
            let mut limits = part.splitn(2, '-');
            let Ok(first) = limits.next().unwrap_or("").parse::<i32>() else {
                continue;
            };
            if first >= completions {
                break;
            }
            let last = match limits.next() {
                Some(l) => match l.parse::<i32>() {
                    Ok(l) => l.min(completions - 1),
                    Err(_) => continue,
                },
                None => first,
            };
            if first < 0 || last < first {
                continue;
            }
            match out.0.last_mut() {
                Some(prev) if prev.1 + 1 >= first => prev.1 = prev.1.max(last),
                _ => out.0.push((first, last)),
            }
        }
        out
    }

    /// The union with `indexes`.
    pub fn with(&self, indexes: impl IntoIterator<Item = i32>) -> Self {
        let mut all: Vec<(i32, i32)> = self.0.clone();
        all.extend(indexes.into_iter().map(|i| (i, i)));
        all.sort_unstable();
        let mut out = Intervals::default();
        for (first, last) in all {
            match out.0.last_mut() {
                Some(prev) if prev.1 + 1 >= first => prev.1 = prev.1.max(last),
                _ => out.0.push((first, last)),
            }
        }
        out
    }

    pub fn total(&self) -> i32 {
        self.0.iter().map(|(f, l)| l - f + 1).sum()
    }

    pub fn has(&self, ix: i32) -> bool {
        self.0.iter().any(|(f, l)| (*f..=*l).contains(&ix))
    }

    pub fn intervals(&self) -> &[(i32, i32)] {
        &self.0
    }
}

/// kube's orderedIntervals.String: two adjacent indexes are written "3,4", longer runs "3-5".
impl std::fmt::Display for Intervals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, (first, last)) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{first}")?;
            if last > first {
                let sep = if *last == first + 1 { "," } else { "-" };
                write!(f, "{sep}{last}")?;
            }
        }
        Ok(())
    }
}

/// kube's calculateSucceededIndexes: the indexes in `status.completedIndexes` (counts survive
/// the pods' deletion) plus those of succeeded pods with a valid index below `completions`.
pub fn succeeded_indexes(job: &Job, pods: &[&Pod], completions: i32) -> Intervals {
    let prev = job
        .status
        .as_ref()
        .and_then(|s| s.completed_indexes.as_deref())
        .unwrap_or("");
    let new: BTreeSet<i32> = pods
        .iter()
        .filter(|p| super::phase(p) == Some("Succeeded"))
        .filter_map(|p| completion_index(p))
        .filter(|ix| *ix < completions)
        .collect();
    Intervals::parse(prev, completions).with(new)
}

/// kube's firstPendingIndexes: the lowest `count` indexes below `completions` that neither an
/// active pod holds nor have succeeded.
pub fn first_pending(
    active: &[&Pod],
    succeeded: &Intervals,
    count: usize,
    completions: i32,
) -> Vec<i32> {
    let busy = succeeded.with(active.iter().filter_map(|p| completion_index(p)));
    (0..completions)
        .filter(|ix| !busy.has(*ix))
        .take(count)
        .collect()
}

/// kube's appendDuplicatedIndexPodsForRemoval: active pods without a valid index, with an index
/// `>= completions`, and all but the best pod of each repeated index (the one kube's ActivePods
/// order would delete last).
pub fn pods_for_removal<'a>(
    active: &[&'a Pod],
    completions: i32,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<&'a Pod> {
    let mut rm = Vec::new();
    let mut by_index: std::collections::BTreeMap<i32, Vec<&'a Pod>> = Default::default();
    for p in active {
        match completion_index(p) {
            Some(ix) if ix < completions => by_index.entry(ix).or_default().push(p),
            _ => rm.push(*p),
        }
    }
    for group in by_index.values().filter(|g| g.len() > 1) {
        rm.extend(podutil::pods_to_delete(group, &[], group.len() - 1, now));
    }
    rm
}

/// kube's podGenerateNameWithIndex: `<job>-<index>-`, the job name cut so the prefix fits.
pub fn generate_name(job_name: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let keep = MAX_GENERATED_NAME.saturating_sub(suffix.len());
    let name = if job_name.len() > keep {
        &job_name[..keep]
    } else {
        job_name
    };
    format!("{name}{suffix}")
}

/// The template of index `index`'s pod: the index annotation and label, hostname
/// `<job>-<index>`, and `JOB_COMPLETION_INDEX` from the label in every container (kept when a
/// container already sets it).
pub fn template_for_index(
    job_name: &str,
    template: &PodTemplateSpec,
    index: i32,
) -> PodTemplateSpec {
    let mut t = template.clone();
    let meta = t.metadata.get_or_insert_with(Default::default);
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(INDEX_KEY.into(), index.to_string());
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(INDEX_KEY.into(), index.to_string());
    if let Some(spec) = t.spec.as_mut() {
        spec.hostname = Some(format!("{job_name}-{index}"));
        let containers = spec
            .init_containers
            .iter_mut()
            .flatten()
            .chain(spec.containers.iter_mut());
        for c in containers {
            let env = c.env.get_or_insert_with(Vec::new);
            if env.iter().any(|e| e.name == INDEX_ENV) {
                continue;
            }
            env.push(EnvVar {
                name: INDEX_ENV.into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: format!("metadata.labels['{INDEX_KEY}']"),
                    }),
                    ..Default::default()
                }),
            });
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(name: &str, ix: Option<&str>, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                annotations: ix.map(|i| [(INDEX_KEY.to_string(), i.to_string())].into()),
                ..Default::default()
            },
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn intervals_parse_merge_and_print_as_kube() {
        let i = Intervals::parse("0-2,4,6,7,9-20", 12);
        assert_eq!(i.to_string(), "0-2,4,6,7,9-11");
        assert_eq!(i.total(), 3 + 1 + 2 + 3);
        assert!(i.has(4) && !i.has(5) && i.has(11));
        assert_eq!(i.with([3, 5, 8]).to_string(), "0-11");
        assert_eq!(Intervals::parse("1,x,3-y,5", 10).to_string(), "1,5");
        assert_eq!(Intervals::default().with([2, 3]).to_string(), "2,3");
        assert_eq!(Intervals::parse("", 3).total(), 0);
    }

    #[test]
    fn index_annotation_must_be_a_non_negative_number() {
        assert_eq!(completion_index(&pod("a", Some("3"), "Running")), Some(3));
        assert_eq!(completion_index(&pod("a", Some("-1"), "Running")), None);
        assert_eq!(completion_index(&pod("a", Some("x"), "Running")), None);
        assert_eq!(completion_index(&pod("a", None, "Running")), None);
    }

    #[test]
    fn lowest_free_indexes_come_first() {
        let a = pod("a", Some("1"), "Running");
        let succeeded = Intervals::parse("0,3", 6);
        assert_eq!(first_pending(&[&a], &succeeded, 2, 6), vec![2, 4]);
        assert_eq!(first_pending(&[&a], &succeeded, 10, 6), vec![2, 4, 5]);
        assert!(first_pending(&[&a], &succeeded, 0, 6).is_empty());
    }

    #[test]
    fn duplicates_and_out_of_range_pods_are_removed_keeping_the_best() {
        let now = chrono::Utc::now();
        let mut ready = pod("ready", Some("1"), "Running");
        ready.status.as_mut().unwrap().conditions =
            Some(vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]);
        let pending = pod("pending", Some("1"), "Pending");
        let other = pod("other", Some("0"), "Running");
        let big = pod("big", Some("5"), "Running");
        let none = pod("none", None, "Running");
        let rm = pods_for_removal(&[&pending, &ready, &other, &big, &none], 3, now);
        let mut names: Vec<String> = rm
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["big", "none", "pending"]);
    }

    #[test]
    fn generate_names_fit_the_limit() {
        assert_eq!(generate_name("work", 3), "work-3-");
        let long = "a".repeat(70);
        let g = generate_name(&long, 12);
        assert_eq!(g.len(), 58);
        assert!(g.ends_with("a-12-"));
    }

    #[test]
    fn index_template_has_annotation_label_hostname_and_env() {
        let mut t = PodTemplateSpec {
            spec: Some(Default::default()),
            ..Default::default()
        };
        let spec = t.spec.as_mut().unwrap();
        spec.containers = vec![
            k8s_openapi::api::core::v1::Container {
                name: "a".into(),
                ..Default::default()
            },
            k8s_openapi::api::core::v1::Container {
                name: "b".into(),
                env: Some(vec![EnvVar {
                    name: INDEX_ENV.into(),
                    value: Some("mine".into()),
                    value_from: None,
                }]),
                ..Default::default()
            },
        ];
        let got = template_for_index("work", &t, 2);
        let meta = got.metadata.unwrap();
        assert_eq!(meta.annotations.unwrap()[INDEX_KEY], "2");
        assert_eq!(meta.labels.unwrap()[INDEX_KEY], "2");
        let spec = got.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("work-2"));
        let env_a = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(
            env_a
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.labels['batch.kubernetes.io/job-completion-index']"
        );
        let env_b = spec.containers[1].env.as_ref().unwrap();
        assert_eq!(env_b.len(), 1);
        assert_eq!(env_b[0].value.as_deref(), Some("mine"));
    }
}
