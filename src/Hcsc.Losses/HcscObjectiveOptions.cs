using Hcsc.Core.Options;

namespace Hcsc.Losses;

/// <summary>
/// The switches of <see cref="HcscObjective"/> (docs/method.md §3–§5 and §11). The defaults are the library's:
/// the reference implementation's mathematics (docs/method.md R1 zero logits, R2 sum over levels) with the R3
/// off-by-one fixed. Presets: <see cref="Reference"/> reproduces the public reference code exactly;
/// <see cref="Paper"/> follows the paper's formula.
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
public sealed class HcscObjectiveOptions
{
    /// <summary>τ: temperature of every instance logit and of the parents' rescaled concentrations φ'. Default 0.2.</summary>
    public double Temperature { get; set; } = 0.2;

    /// <summary>ICSC: select queue negatives per level. Default true.</summary>
    public bool InstanceSelection { get; set; } = true;

    /// <summary>PCSC: select candidate prototypes below the top level. Default true.</summary>
    public bool PrototypeSelection { get; set; } = true;

    /// <summary>Local views use the ICSC masks of the global query, per level. Default true.</summary>
    public bool SelectionOnLocalViews { get; set; } = true;

    /// <summary>docs/method.md R1: how unselected negatives enter the softmax. Default <see cref="UnselectedNegativeHandling.ZeroLogit"/>.</summary>
    public UnselectedNegativeHandling UnselectedNegatives { get; set; } = UnselectedNegativeHandling.ZeroLogit;

    /// <summary>docs/method.md R2: how ICSC terms are combined over levels. Default <see cref="LevelReduction.Sum"/>.</summary>
    public LevelReduction InstanceLevelReduction { get; set; } = LevelReduction.Sum;

    /// <summary>docs/method.md R3 compatibility switch (see the remarks). Default false.</summary>
    public bool ReproduceReferenceOffByOne { get; set; }

    /// <summary>
    /// Check that batch indices lie in [0, N) also for tensors on an accelerator (a device sync per step).
    /// CPU tensors are always checked. Default false.
    /// </summary>
    public bool CheckIndexRangesOnDevice { get; set; }

    /// <summary>The public reference implementation, exactly (docs/method.md §11): zero logits (R1), sum over levels (R2), the off-by-one (R3), τ = 0.2.</summary>
    public static HcscObjectiveOptions Reference() => new()
    {
        UnselectedNegatives = UnselectedNegativeHandling.ZeroLogit,
        InstanceLevelReduction = LevelReduction.Sum,
        ReproduceReferenceOffByOne = true,
    };

    /// <summary>The paper's formula (docs/method.md §11): unselected negatives excluded (R1), sum over levels (R2), no off-by-one (R3), τ = 0.2.</summary>
    public static HcscObjectiveOptions Paper() => new()
    {
        UnselectedNegatives = UnselectedNegativeHandling.Exclude,
        InstanceLevelReduction = LevelReduction.Sum,
        ReproduceReferenceOffByOne = false,
    };

    /// <summary>Builds the options from the library-wide <see cref="HcscOptions"/> (τ from <c>Model</c>, switches from <c>Selection</c>).</summary>
    /// <param name="options">Validated HCSC options.</param>
    public static HcscObjectiveOptions From(HcscOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var s = options.Selection;
        return new HcscObjectiveOptions
        {
            Temperature = options.Model.Temperature,
            InstanceSelection = s.InstanceSelection,
            PrototypeSelection = s.PrototypeSelection,
            SelectionOnLocalViews = s.SelectionOnLocalViews,
            UnselectedNegatives = s.UnselectedNegatives,
            InstanceLevelReduction = s.InstanceLevelReduction,
            ReproduceReferenceOffByOne = s.ReproduceReferenceOffByOne,
        };
    }

    /// <summary>
    /// Use the C# kernels for the instance and PCSC cross-entropies when the tensors are on the CPU
    /// (default). False takes the tensor-operation path everywhere; tests use it to compare the two.
    /// </summary>
    internal bool HostKernels { get; set; } = true;

    /// <summary>A copy of these options.</summary>
    public HcscObjectiveOptions Clone() => (HcscObjectiveOptions)MemberwiseClone();
}
