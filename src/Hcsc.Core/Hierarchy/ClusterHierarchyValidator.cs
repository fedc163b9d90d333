using Hcsc.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Core.Hierarchy;

/// <summary>Checks the inputs of <see cref="ClusterHierarchy.FromTensors(IReadOnlyList{TorchSharp.torch.Tensor}, IReadOnlyList{TorchSharp.torch.Tensor}, IReadOnlyList{TorchSharp.torch.Tensor}, IReadOnlyList{TorchSharp.torch.Tensor})"/> and describes every problem in plain words.</summary>
internal static class ClusterHierarchyValidator
{
    public static List<string> Validate(
        IReadOnlyList<Tensor> prototypes,
        IReadOnlyList<Tensor> assignments,
        IReadOnlyList<Tensor> concentrations,
        IReadOnlyList<Tensor> parents,
        double unitNormTolerance)
    {
        var problems = new List<string>();
        int levels = prototypes.Count;
        if (levels == 0)
        {
            problems.Add("at least one level is required, got 0 prototype tensors.");
            return problems;
        }

        if (assignments.Count != levels || concentrations.Count != levels || parents.Count != levels - 1)
        {
            problems.Add(
                $"expected {levels} assignment tensors, {levels} concentration tensors and {levels - 1} parent tensors (one per level but the top) " +
                $"for {levels} prototype tensors, got {assignments.Count}, {concentrations.Count} and {parents.Count}.");
            return problems;
        }

        Device device = prototypes[0].device;
        long sampleCount = assignments[0].dim() == 1 ? assignments[0].shape[0] : -1;
        long embeddingSize = prototypes[0].dim() == 2 ? prototypes[0].shape[1] : -1;
        bool shapesOk = true;
        for (int l = 0; l < levels; l++)
        {
            string level = $"level {l}";
            Tensor p = prototypes[l], a = assignments[l], c = concentrations[l];
            if (p.dim() != 2 || !is_floating_point(p) || p.shape[0] == 0 || p.shape[1] == 0)
            {
                problems.Add($"{level} prototypes must be a non-empty 2-D floating-point tensor [k, d]; got {p.Describe()}.");
                shapesOk = false;
                continue;
            }

            long k = p.shape[0];
            if (p.shape[1] != embeddingSize)
            {
                problems.Add($"{level} prototypes have embedding size {p.shape[1]} but level 0 has {embeddingSize}; got {p.Describe()}.");
                shapesOk = false;
            }

            if (a.dim() != 1 || a.dtype != ScalarType.Int64 || a.shape[0] != sampleCount || sampleCount <= 0)
            {
                problems.Add($"{level} assignments must be a non-empty 1-D int64 tensor [N] with the same N at every level (N = {sampleCount} at level 0); got {a.Describe()}.");
                shapesOk = false;
            }

            if (c.dim() != 1 || !is_floating_point(c) || c.shape[0] != k)
            {
                problems.Add($"{level} concentrations must be a 1-D floating-point tensor [k] = [{k}]; got {c.Describe()}.");
                shapesOk = false;
            }

            if (l < levels - 1)
            {
                Tensor parent = parents[l];
                if (parent.dim() != 1 || parent.dtype != ScalarType.Int64 || parent.shape[0] != k)
                {
                    problems.Add($"{level} parents must be a 1-D int64 tensor [k] = [{k}]; got {parent.Describe()}.");
                    shapesOk = false;
                }
            }

            foreach (var (name, tensor) in new[] { ("prototypes", p), ("assignments", a), ("concentrations", c) }.Concat(l < levels - 1 ? new[] { ("parents", parents[l]) } : []))
            {
                if (!DeviceEquality.SameDevice(tensor.device, device))
                {
                    problems.Add($"{level} {name} are on {tensor.device} but level 0 prototypes are on {device}; move every tensor to one device.");
                    shapesOk = false;
                }
            }
        }

        if (!shapesOk)
        {
            return problems;
        }

        using var scope = NewDisposeScope();
        // Explicit scalars, alive for every call that reads them (no implicitly converted temporaries).
        using var one = 1.0.ToScalar();
        using var tolerance = unitNormTolerance.ToScalar();
        using var zero = 0.ToScalar();
        for (int l = 0; l < levels; l++)
        {
            string level = $"level {l}";
            long k = prototypes[l].shape[0];
            CheckRange(problems, $"{level} assignments", assignments[l], k);
            if (l < levels - 1)
            {
                CheckRange(problems, $"{level} parents", parents[l], prototypes[l + 1].shape[0]);
            }

            var norms = prototypes[l].detach().to(ScalarType.Float64).norm(1);
            long offNorm = norms.sub(one).abs().gt(tolerance).sum().item<long>();
            if (offNorm > 0)
            {
                problems.Add($"{level} prototypes must be L2-normalised (row norms 1 ± {unitNormTolerance}); {offNorm} of {k} rows are not. Normalise them, e.g. with torch.nn.functional.normalize(prototypes, dim: 1).");
            }

            var concentration = concentrations[l].detach();
            long bad = concentration.isfinite().logical_not().logical_or(concentration.le(zero)).sum().item<long>();
            if (bad > 0)
            {
                problems.Add($"{level} concentrations must be finite and > 0; {bad} of {k} are not.");
            }
        }

        if (problems.Count > 0)
        {
            return problems;
        }

        for (int l = 0; l < levels - 1; l++)
        {
            var composed = parents[l].index_select(0, assignments[l]);
            var mismatch = composed.ne(assignments[l + 1]);
            long count = mismatch.sum().item<long>();
            if (count > 0)
            {
                long first = mismatch.nonzero()[0, 0].item<long>();
                problems.Add(
                    $"assignments do not compose through parents between level {l} and level {l + 1}: for {count} samples " +
                    $"a_{l + 1}(i) != parent_{l}(a_{l}(i)); the first is sample {first} (a_{l} = {assignments[l][first].item<long>()}, " +
                    $"parent = {composed[first].item<long>()}, a_{l + 1} = {assignments[l + 1][first].item<long>()}).");
            }
        }

        return problems;
    }

    private static void CheckRange(List<string> problems, string what, Tensor indices, long upper)
    {
        long min = indices.min().item<long>();
        long max = indices.max().item<long>();
        if (min < 0 || max >= upper)
        {
            problems.Add($"{what} must lie in [0, {upper}); found values from {min} to {max}.");
        }
    }
}
