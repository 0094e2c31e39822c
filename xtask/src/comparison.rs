//! What a comparison folder holds besides its runs: the recipe (`recipe.json`), the seeds
//! (`seeds.json`) and the models (`models.json`), and the rules for merging folders of the same
//! recipe and models that ran different seeds.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ba_models::ModelKind;

use crate::preset::Recipe;

/// The seeds of a comparison, stored beside its recipe.
const SEEDS: &str = "seeds.json";
/// The models of a comparison; folders written before the file existed compared the notebook's two.
const MODELS: &str = "models.json";
/// The recipe of a comparison (with its first seed).
const RECIPE: &str = "recipe.json";

/// A comparison: every model of `models` trained under `recipe` with each of `seeds`.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The recipe; its `seed` is the first of `seeds`.
    pub recipe: Recipe,
    pub seeds: Vec<u64>,
    /// The models, baseline first, in the order of [`ModelKind::ALL`].
    pub models: Vec<ModelKind>,
}

impl Comparison {
    /// A comparison of `models` (put in the order of [`ModelKind::ALL`]; repeats are an error)
    /// under `recipe` with `seeds`.
    pub fn new(recipe: &Recipe, seeds: Vec<u64>, models: &[ModelKind]) -> Result<Self> {
        let Some(&first) = seeds.first() else { bail!("a comparison needs at least one seed") };
        let ordered: Vec<ModelKind> = ModelKind::ALL.into_iter().filter(|k| models.contains(k)).collect();
        if ordered.len() != models.len() {
            bail!("--models repeats a model: {}", names(models));
        }
        if ordered.len() < 2 {
            bail!("--models needs at least two models to compare, got {}", names(models));
        }
        for &kind in &ordered {
            recipe.check_model(kind)?;
        }
        Ok(Self { recipe: Recipe { seed: first, ..recipe.clone() }, seeds, models: ordered })
    }

    /// Writes `seeds.json` and `models.json` into `dir` (`recipe.json` is the setup's).
    pub fn write_lists(&self, dir: &Path) -> Result<()> {
        crate::write_json(&dir.join(SEEDS), &self.seeds)?;
        crate::write_json(&dir.join(MODELS), &self.models.iter().map(|k| k.name()).collect::<Vec<_>>())
    }

    /// Writes all three files into `dir`.
    fn write(&self, dir: &Path) -> Result<()> {
        crate::write_json(&dir.join(RECIPE), &self.recipe)?;
        self.write_lists(dir)
    }

    /// The comparison in the folder `dir`, from its three files.
    pub fn read(dir: &Path) -> Result<Self> {
        let recipe_path = dir.join(RECIPE);
        let text =
            std::fs::read_to_string(&recipe_path).with_context(|| format!("reading {}", recipe_path.display()))?;
        let recipe = Recipe::from_json(&text, &recipe_path)?;
        let seeds = read_seeds(dir)?;
        let models = read_models(dir)?;
        let comparison = Self::new(&recipe, seeds, &models).with_context(|| format!("{}", dir.display()))?;
        if comparison.recipe.seed != recipe.seed {
            bail!(
                "{}: seed {} is not the first of {SEEDS}, {:?}",
                recipe_path.display(),
                recipe.seed,
                comparison.seeds
            );
        }
        Ok(comparison)
    }

    /// The comparison made of `parts` (folders of the same recipe and models with different
    /// seeds), with the seeds in the order the parts give them. Refuses parts whose recipes
    /// differ, naming the field, or whose models or seeds clash.
    pub fn merge(parts: &[(PathBuf, Comparison)]) -> Result<Self> {
        let Some((first_dir, first)) = parts.first() else { bail!("nothing to merge") };
        let mut seeds = Vec::new();
        for (dir, part) in parts {
            if let Some(field) = differing_field(&first.recipe, &part.recipe)? {
                bail!(
                    "{} and {} ran different recipes: `{field}` is {} in one and {} in the other; only \
                     comparisons of the same recipe can be merged",
                    first_dir.join(RECIPE).display(),
                    dir.join(RECIPE).display(),
                    field_value(&first.recipe, &field)?,
                    field_value(&part.recipe, &field)?,
                );
            }
            if part.models != first.models {
                bail!(
                    "{} compares {}, {} compares {}: only comparisons of the same models can be merged",
                    first_dir.display(),
                    names(&first.models),
                    dir.display(),
                    names(&part.models)
                );
            }
            for &seed in &part.seeds {
                if seeds.contains(&seed) {
                    bail!(
                        "seed {seed} is in more than one folder (the second: {}); each seed may count once",
                        dir.display()
                    );
                }
                seeds.push(seed);
            }
        }
        Self::new(&first.recipe, seeds, &first.models)
    }

    /// Writes the merged comparison into the new folder `out`: its three files and, per seed
    /// and model, the run's `metrics.jsonl` copied from `parts` and its weight files linked
    /// (hard links, so no copy; skipped where the file system refuses).
    pub fn write_merged(&self, parts: &[(PathBuf, Comparison)], out: &Path) -> Result<()> {
        self.write(out)?;
        for (dir, part) in parts {
            for &seed in &part.seeds {
                let seed_recipe = Recipe { seed, ..part.recipe.clone() };
                std::fs::create_dir_all(out.join(format!("seed-{seed}")))
                    .with_context(|| format!("creating {}", out.display()))?;
                crate::write_json(&out.join(format!("seed-{seed}")).join(RECIPE), &seed_recipe)?;
                for &kind in &part.models {
                    let (from, to) = (run_folder(dir, seed, kind), run_folder(out, seed, kind));
                    std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
                    let metrics = from.join("metrics.jsonl");
                    std::fs::copy(&metrics, to.join("metrics.jsonl"))
                        .with_context(|| format!("copying {}", metrics.display()))?;
                    for weights in ["final.safetensors", "best.safetensors"] {
                        if from.join(weights).is_file() {
                            let _ = std::fs::hard_link(from.join(weights), to.join(weights));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The run folder of `kind` under `seed` in the comparison folder `dir`.
pub fn run_folder(dir: &Path, seed: u64, kind: ModelKind) -> PathBuf {
    dir.join(format!("seed-{seed}")).join(kind.name())
}

/// `alexnet, ba-alexnet`.
fn names(models: &[ModelKind]) -> String {
    models.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

/// The first recipe field, in stored order, other than the seed where `a` and `b` differ.
fn differing_field(a: &Recipe, b: &Recipe) -> Result<Option<String>> {
    let (serde_json::Value::Object(a), serde_json::Value::Object(b)) =
        (serde_json::to_value(a)?, serde_json::to_value(b)?)
    else {
        bail!("a recipe is a JSON object");
    };
    Ok(a.iter()
        .find(|(name, value)| name.as_str() != "seed" && b.get(name.as_str()) != Some(value))
        .map(|(n, _)| n.clone()))
}

fn field_value(recipe: &Recipe, field: &str) -> Result<String> {
    Ok(serde_json::to_value(recipe)?.get(field).map_or("absent".to_string(), |v| v.to_string()))
}

/// The seeds of the comparison in `dir`.
fn read_seeds(dir: &Path) -> Result<Vec<u64>> {
    let path = dir.join(SEEDS);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let seeds: Vec<u64> =
        serde_json::from_str(&text).with_context(|| format!("{}: not a list of seeds", path.display()))?;
    if seeds.is_empty() {
        bail!("{}: no seeds", path.display());
    }
    let mut unique = seeds.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != seeds.len() {
        bail!("{}: a seed is listed twice: {seeds:?}", path.display());
    }
    Ok(seeds)
}

/// The models of the comparison in `dir`: `models.json`, or the notebook's two without it.
fn read_models(dir: &Path) -> Result<Vec<ModelKind>> {
    let path = dir.join(MODELS);
    if !path.is_file() {
        return Ok(ModelKind::NOTEBOOK.to_vec());
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let names: Vec<String> =
        serde_json::from_str(&text).with_context(|| format!("{}: not a list of model names", path.display()))?;
    names.iter().map(|n| n.parse::<ModelKind>().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::test_util::tiny_setup;

    fn folder(tag: &str, recipe: &Recipe, seeds: &[u64], models: &[ModelKind]) -> (PathBuf, Comparison) {
        let dir = std::env::temp_dir().join(format!("xtask-comparison-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let comparison = Comparison::new(recipe, seeds.to_vec(), models).unwrap();
        comparison.write(&dir).unwrap();
        (dir.clone(), Comparison::read(&dir).unwrap())
    }

    #[test]
    fn models_are_ordered_baseline_first_and_checked() {
        let (_, recipe) = tiny_setup();
        let c = Comparison::new(&recipe, vec![3, 1], &[ModelKind::BaAlexNet, ModelKind::AlexNet]).unwrap();
        assert_eq!(c.models, ModelKind::NOTEBOOK);
        assert_eq!(c.recipe.seed, 3, "the recipe holds the first seed");
        let err = Comparison::new(&recipe, vec![1], &[ModelKind::AlexNet, ModelKind::AlexNet]).unwrap_err();
        assert!(err.to_string().contains("repeats a model"), "{err}");
        let err = Comparison::new(&recipe, vec![1], &[ModelKind::SeAlexNet]).unwrap_err();
        assert!(err.to_string().contains("at least two models"), "{err}");
    }

    #[test]
    fn a_folder_round_trips_and_old_folders_compare_the_notebooks_two() {
        let (_, recipe) = tiny_setup();
        let (dir, read) = folder("round", &recipe, &[7, 8], &ModelKind::ALEXNETS);
        assert_eq!((read.seeds.clone(), read.models.clone()), (vec![7, 8], ModelKind::ALEXNETS.to_vec()));
        std::fs::remove_file(dir.join(MODELS)).unwrap();
        assert_eq!(Comparison::read(&dir).unwrap().models, ModelKind::NOTEBOOK);
        std::fs::write(dir.join(MODELS), "[\"alexnet\", \"vgg\"]").unwrap();
        let err = format!("{:#}", Comparison::read(&dir).unwrap_err());
        assert!(err.contains("models.json") && err.contains("unknown model \"vgg\""), "{err}");
        std::fs::write(dir.join(MODELS), "[\"alexnet\", \"se-alexnet\"]").unwrap();
        std::fs::write(dir.join(SEEDS), "[7, 7]").unwrap();
        let err = format!("{:#}", Comparison::read(&dir).unwrap_err());
        assert!(err.contains("seeds.json: a seed is listed twice"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn merging_refuses_other_recipes_models_and_repeated_seeds() {
        let (_, recipe) = tiny_setup();
        let a = folder("a", &recipe, &[1], &ModelKind::ALEXNETS);
        let b = folder("b", &Recipe { seed: 2, ..recipe.clone() }, &[2, 3], &ModelKind::ALEXNETS);
        let merged = Comparison::merge(&[a.clone(), b.clone()]).unwrap();
        assert_eq!((merged.seeds.clone(), merged.recipe.seed), (vec![1, 2, 3], 1));

        let other_lr = folder("lr", &Recipe { lr: 0.5, seed: 4, ..recipe.clone() }, &[4], &ModelKind::ALEXNETS);
        let err = Comparison::merge(&[a.clone(), other_lr.clone()]).unwrap_err().to_string();
        assert!(
            err.contains("`lr` is 0.001 in one and 0.5 in the other") && err.contains("xtask-comparison-lr"),
            "{err}"
        );
        let no_mixup =
            folder("mixup", &Recipe { mixup_alpha: None, seed: 5, ..recipe.clone() }, &[5], &ModelKind::ALEXNETS);
        let err = Comparison::merge(&[a.clone(), no_mixup.clone()]).unwrap_err().to_string();
        assert!(err.contains("`mixup_alpha` is 1.5 in one and null in the other"), "{err}");
        let two = folder("two", &Recipe { seed: 6, ..recipe.clone() }, &[6], &ModelKind::NOTEBOOK);
        let err = Comparison::merge(&[a.clone(), two.clone()]).unwrap_err().to_string();
        assert!(err.contains("only comparisons of the same models"), "{err}");
        let again = folder("again", &Recipe { seed: 3, ..recipe.clone() }, &[3], &ModelKind::ALEXNETS);
        let err = Comparison::merge(&[b.clone(), again.clone()]).unwrap_err().to_string();
        assert!(err.contains("seed 3 is in more than one folder"), "{err}");
        for (dir, _) in [a, b, other_lr, no_mixup, two, again] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
