using Hcsc.Core.Options;
using Hcsc.Models.Optimization;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Models.Momentum;

/// <summary>
/// The momentum (EMA) update of the key encoder: θ_k ← m·θ_k + (1 − m)·θ_q for every parameter, matched by name.
/// Buffers (BN running statistics) are not touched: the key encoder keeps its own, as in the reference.
/// </summary>
public static class MomentumUpdate
{
    /// <summary>Applies one EMA step in place on <paramref name="target"/>'s parameters, without gradient.</summary>
    /// <param name="source">The query encoder (θ_q).</param>
    /// <param name="target">The key encoder (θ_k); must have the same parameter names and shapes.</param>
    /// <param name="momentum">m in [0, 1) (<see cref="HcscOptionsValidator.EncoderMomentumProblem"/>); 0 copies θ_q.</param>
    /// <exception cref="ArgumentException">The parameter sets differ; every difference is listed.</exception>
    public static void Apply(nn.Module source, nn.Module target, double momentum)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(target);
        if (HcscOptionsValidator.EncoderMomentumProblem(momentum) is { } problem)
        {
            throw new ArgumentOutOfRangeException(nameof(momentum), momentum, problem);
        }

        var sourceParameters = source.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var targetParameters = target.named_parameters().ToList();
        var problems = new List<string>();
        foreach (var (name, parameter) in targetParameters)
        {
            if (!sourceParameters.TryGetValue(name, out var from))
            {
                problems.Add($"'{name}' is missing from the source");
            }
            else if (!from.shape.SequenceEqual(parameter.shape))
            {
                problems.Add($"'{name}' has shape [{string.Join(", ", from.shape)}] in the source and [{string.Join(", ", parameter.shape)}] in the target");
            }
        }

        var targetNames = targetParameters.Select(p => p.name).ToHashSet();
        problems.AddRange(sourceParameters.Keys.Where(n => !targetNames.Contains(n)).Select(n => $"'{n}' is missing from the target"));
        if (problems.Count > 0)
        {
            throw new ArgumentException("The encoders' parameters do not match: " + string.Join("; ", problems) + ".", nameof(target));
        }

        // Explicit scalars, alive until the loop ends: an implicitly converted Scalar temporary can be
        // finalised by the GC while the native call still reads it (seen as a random "toDouble" failure).
        using var noGrad = no_grad();
        using var keep = momentum.ToScalar();
        using var take = (1 - momentum).ToScalar();
        foreach (var (name, parameter) in targetParameters)
        {
            parameter.mul_(keep).add_(sourceParameters[name], alpha: take);
        }
    }

    /// <summary>
    /// The same EMA step on packed encoders: θ_k ← m·θ_k + (1 − m)·θ_q over the whole flat buffer in two kernels,
    /// element for element what <see cref="Apply(nn.Module, nn.Module, double)"/> computes.
    /// </summary>
    /// <param name="source">The query encoder's packed parameters (θ_q).</param>
    /// <param name="target">The key encoder's packed parameters (θ_k), in the same layout (<see cref="FlatParameters.HasSameLayout"/>).</param>
    /// <param name="momentum">m in [0, 1); 0 copies θ_q.</param>
    /// <exception cref="ArgumentException">The buffers' layouts differ.</exception>
    public static void Apply(FlatParameters source, FlatParameters target, double momentum)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(target);
        if (HcscOptionsValidator.EncoderMomentumProblem(momentum) is { } problem)
        {
            throw new ArgumentOutOfRangeException(nameof(momentum), momentum, problem);
        }

        if (!source.HasSameLayout(target))
        {
            throw new ArgumentException(
                $"The packed encoders differ in layout ({source.Names.Count} parameters, {source.Count} values against {target.Names.Count}, {target.Count}); pack both from encoders of the same architecture.",
                nameof(target));
        }

        using var noGrad = no_grad();
        using var keep = momentum.ToScalar();
        using var take = (1 - momentum).ToScalar();
        target.Values.mul_(keep).add_(source.Values, alpha: take);
    }
}
