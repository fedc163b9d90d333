using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// Everything <see cref="HcscObjective"/>.Compute computed in one step. All values are tensors on the
/// queries' device (reading them is the caller's choice of when to sync); the tensors belong to the
/// caller's dispose scope, or are released at once by <see cref="Dispose"/>. Lists indexed by level are empty during
/// warm-up (no hierarchy); lists indexed by local view are empty without local views.
/// </summary>
public sealed class HcscLossResult : IDisposable
{
    /// <summary>The objective to minimise, a scalar with gradient into the queries (and local views).</summary>
    public required Tensor Total { get; init; }

    /// <summary>Plain InfoNCE of the global query (all queue negatives), a scalar; the whole objective during warm-up.</summary>
    public required Tensor InfoNce { get; init; }

    /// <summary>ICSC_l per level, scalars; empty when instance selection is off or during warm-up.</summary>
    public required IReadOnlyList<Tensor> Instance { get; init; }

    /// <summary>PCSC_l per level, scalars; empty during warm-up.</summary>
    public required IReadOnlyList<Tensor> Prototype { get; init; }

    /// <summary>Per local view, its plain InfoNCE, a scalar.</summary>
    public required IReadOnlyList<Tensor> LocalInfoNce { get; init; }

    /// <summary>Per local view, its ICSC_l per level (same masks as the global query); empty lists when selection on local views is off.</summary>
    public required IReadOnlyList<IReadOnlyList<Tensor>> LocalInstance { get; init; }

    /// <summary>Per local view, its PCSC_l per level (with its own prototype masks, <see cref="LocalPrototypeMasks"/>).</summary>
    public required IReadOnlyList<IReadOnlyList<Tensor>> LocalPrototype { get; init; }

    /// <summary>Per level, the fraction of queue negatives kept by ICSC (mean of the mask), a scalar; 1 when selection is off.</summary>
    public required IReadOnlyList<Tensor> AcceptanceRatio { get; init; }

    /// <summary>Fraction of global queries whose positive key has the highest plain logit (all negatives), a scalar.</summary>
    public required Tensor InstanceAccuracy { get; init; }

    /// <summary>Per level, fraction of global queries whose positive prototype has the highest PCSC logit, a scalar.</summary>
    public required IReadOnlyList<Tensor> PrototypeAccuracy { get; init; }

    /// <summary>Per level, the ICSC mask <c>[B, Q]</c>, bool (true = kept); empty when instance selection is off.</summary>
    public required IReadOnlyList<Tensor> InstanceMasks { get; init; }

    /// <summary>Per level, the PCSC mask <c>[B, k_l]</c>, bool (true = selected candidate; false = unselected or not a candidate).</summary>
    public required IReadOnlyList<Tensor> PrototypeMasks { get; init; }

    /// <summary>Per local view, its own PCSC mask per level <c>[B, k_l]</c>, bool (drawn independently of the global query's).</summary>
    public required IReadOnlyList<IReadOnlyList<Tensor>> LocalPrototypeMasks { get; init; }

    /// <summary>Per level, the candidate negative prototypes <c>[k_l]</c>, bool.</summary>
    public required IReadOnlyList<Tensor> PrototypeCandidates { get; init; }

    /// <summary>
    /// Back-propagates <see cref="Total"/> (<c>Total.backward()</c>) and surfaces any exception raised inside a custom
    /// backward pass, which libtorch's native autograd engine cannot carry.
    /// </summary>
    /// <exception cref="BackwardPassException">A loss kernel's backward pass failed; the gradients are NaN.</exception>
    public void Backward()
    {
        Total.backward();
        BackwardFailures.ThrowIfAny();
    }

    /// <summary>Releases every tensor of the result (each once, also where two parts share one); call it after
    /// <see cref="Backward"/> and after reading what you log, e.g. with <c>using var result = objective.Compute(…)</c>.</summary>
    public void Dispose()
    {
        foreach (var tensor in Tensors().ToList())
        {
            tensor.Dispose();
        }
    }

    /// <summary>Every distinct tensor of the result.</summary>
    internal IEnumerable<Tensor> Tensors()
    {
        var all = new[] { Total, InfoNce, InstanceAccuracy }
            .Concat(Instance).Concat(Prototype).Concat(LocalInfoNce)
            .Concat(LocalInstance.SelectMany(t => t)).Concat(LocalPrototype.SelectMany(t => t))
            .Concat(AcceptanceRatio).Concat(PrototypeAccuracy).Concat(InstanceMasks).Concat(PrototypeMasks).Concat(LocalPrototypeMasks.SelectMany(t => t)).Concat(PrototypeCandidates);
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var tensor in all)
        {
            if (seen.Add(tensor))
            {
                yield return tensor;
            }
        }
    }
}
