using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Core.Hierarchy;

/// <summary>
/// One level of a <see cref="ClusterHierarchy"/> (docs/method.md §2). Level 0 is the finest. Tensors are
/// owned by the level (their own handles onto the caller's storage) and released by
/// <see cref="ClusterHierarchy.Dispose"/>; treat them as read-only.
/// </summary>
public sealed class ClusterLevel
{
    internal ClusterLevel(int index, Tensor prototypes, Tensor assignments, Tensor concentrations, Tensor? parents, Tensor? similarityToParents)
    {
        Index = index;
        Prototypes = prototypes;
        Assignments = assignments;
        Concentrations = concentrations;
        Parents = parents;
        SimilarityToParents = similarityToParents;
    }

    /// <summary>Zero-based level index; 0 is the finest level (k_1 when levels are counted from 1; docs/method.md, Notation).</summary>
    public int Index { get; }

    /// <summary>Number of prototypes k_l at this level.</summary>
    public long ClusterCount => Prototypes.shape[0];

    /// <summary>C_l: L2-normalised prototypes, <c>[k_l, d]</c>, floating point.</summary>
    public Tensor Prototypes { get; }

    /// <summary>a_l: the cluster of every dataset sample at this level, <c>[N]</c>, int64 in [0, k_l).</summary>
    public Tensor Assignments { get; }

    /// <summary>φ_l: the concentration of every prototype, used as its temperature, <c>[k_l]</c>, finite and &gt; 0.</summary>
    public Tensor Concentrations { get; }

    /// <summary>parent_l: the cluster at the next coarser level of every prototype, <c>[k_l]</c>, int64; null at the top level.</summary>
    public Tensor? Parents { get; }

    /// <summary>S_l = C_l · C_{l+1}ᵀ, <c>[k_l, k_{l+1}]</c>, used by prototype selection; null at the top level.</summary>
    public Tensor? SimilarityToParents { get; }

    internal IEnumerable<Tensor> OwnedTensors()
    {
        yield return Prototypes;
        yield return Assignments;
        yield return Concentrations;
        if (Parents is not null)
        {
            yield return Parents;
        }

        if (SimilarityToParents is not null)
        {
            yield return SimilarityToParents;
        }
    }
}
