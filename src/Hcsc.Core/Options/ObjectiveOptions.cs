namespace Hcsc.Core.Options;

/// <summary>
/// The HCSC objective (docs/method.md §3–§5 and §11): the temperature τ and the selection switches. The configuration
/// section <c>Hcsc:Objective</c> (<see cref="HcscOptions.Objective"/>); <c>HcscObjective</c> (package <c>Hcsc.Losses</c>)
/// takes it as is. The defaults are the library's: the reference implementation's mathematics (docs/method.md R1 zero
/// logits, R2 sum over levels) with the R3 off-by-one fixed. Presets: <see cref="Reference"/> reproduces the public
/// reference code exactly; <see cref="Paper"/> follows the paper's formula. Validated by <see cref="HcscOptionsValidator"/>.
/// </summary>
/// <remarks>
/// <list type="table">
/// <item><term><see cref="InstanceSelection"/></term><description>ICSC on: per level, queue negatives are kept by Bernoulli masks. Off: the instance term is plain InfoNCE (all masks 1), counted once.</description></item>
/// <item><term><see cref="PrototypeSelection"/></term><description>PCSC selection on: below the top level, candidate prototypes are kept by Bernoulli masks. Off: every candidate is used at every level. The PCSC terms are always present when a hierarchy is given.</description></item>
/// <item><term><see cref="SelectionOnLocalViews"/></term><description>Local views of multi-crop use the global query's ICSC masks per level; off: one plain InfoNCE term per local view.</description></item>
/// <item><term><see cref="UnselectedNegatives"/></term><description>docs/method.md R1: an unselected negative (instance or prototype) enters with logit 0 (reference) or is excluded (paper).</description></item>
/// <item><term><see cref="InstanceLevelReduction"/></term><description>docs/method.md R2: ICSC terms are summed (reference) or averaged over levels. PCSC terms are always averaged.</description></item>
/// <item><term><see cref="ReproduceReferenceOffByOne"/></term><description>docs/method.md R3 compatibility switch: the candidate prototypes are range(max assigned id) minus the batch's positives, so the largest id is never a negative. Default off (fixed).</description></item>
/// </list>
/// </remarks>
public sealed class ObjectiveOptions
{
    /// <summary>
    /// τ: temperature of every instance logit, of the parents' rescaled concentrations φ', and the mean of each level's
    /// concentrations after rescaling in hierarchical k-means. Default 0.2.
    /// </summary>
    public double Temperature { get; set; } = 0.2;

    /// <summary>ICSC: drop queue negatives that probably share the query's cluster, per level. Default true.</summary>
    public bool InstanceSelection { get; set; } = true;

    /// <summary>PCSC: drop negative prototypes that probably share the positive's parent, below the top level. Default true.</summary>
    public bool PrototypeSelection { get; set; } = true;

    /// <summary>Apply instance selection to the local views of multi-crop too (with the global query's masks, per level). Default true.</summary>
    public bool SelectionOnLocalViews { get; set; } = true;

    /// <summary>docs/method.md R1: how an unselected negative enters the softmax. Default <see cref="UnselectedNegativeHandling.ZeroLogit"/>, as the reference.</summary>
    public UnselectedNegativeHandling UnselectedNegatives { get; set; } = UnselectedNegativeHandling.ZeroLogit;

    /// <summary>docs/method.md R2: how ICSC terms are combined over levels. Default <see cref="LevelReduction.Sum"/>, as the reference.</summary>
    public LevelReduction InstanceLevelReduction { get; set; } = LevelReduction.Sum;

    /// <summary>
    /// docs/method.md R3 compatibility switch: reproduce the reference's off-by-one, where the prototype with the
    /// largest id is never a candidate negative. Default false (the bug is fixed).
    /// </summary>
    public bool ReproduceReferenceOffByOne { get; set; }

    /// <summary>
    /// Check that batch indices lie in [0, N) also for tensors on an accelerator (a device sync per step).
    /// CPU tensors are always checked. Default false.
    /// </summary>
    public bool CheckIndexRangesOnDevice { get; set; }

    /// <summary>
    /// Check that the queries, keys and local queries given to the objective are unit-norm, ‖x_i‖₂ = 1 within 1e-3,
    /// as every logit assumes (q·k / τ of L2-normalised embeddings); an unnormalised encoder output otherwise trains
    /// silently on other logits. Costs a norm and a device sync per step. Default false.
    /// </summary>
    public bool CheckUnitNorm { get; set; }

    /// <summary>
    /// The code path of the cross-entropies, mask draws and selection tables while an objective with these options
    /// computes (<see cref="Devices.KernelSelection"/>): <see cref="KernelPath.Auto"/> (default) leaves the choice of the
    /// calling flow; <see cref="KernelPath.Tensor"/> runs the accelerator's path on the CPU too. The results agree
    /// within float rounding.
    /// </summary>
    public KernelPath Kernels { get; set; }

    /// <summary>The public reference implementation, exactly (docs/method.md §11): zero logits (R1), sum over levels (R2), the off-by-one (R3), τ = 0.2.</summary>
    public static ObjectiveOptions Reference() => new()
    {
        UnselectedNegatives = UnselectedNegativeHandling.ZeroLogit,
        InstanceLevelReduction = LevelReduction.Sum,
        ReproduceReferenceOffByOne = true,
    };

    /// <summary>The paper's formula (docs/method.md §11): unselected negatives excluded (R1), sum over levels (R2), no off-by-one (R3), τ = 0.2.</summary>
    public static ObjectiveOptions Paper() => new()
    {
        UnselectedNegatives = UnselectedNegativeHandling.Exclude,
        InstanceLevelReduction = LevelReduction.Sum,
        ReproduceReferenceOffByOne = false,
    };

    /// <summary>A copy of these options.</summary>
    public ObjectiveOptions Clone() => (ObjectiveOptions)MemberwiseClone();
}
