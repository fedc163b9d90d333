namespace Hcsc.Losses;

/// <summary>What the selection cache of a <see cref="SelectiveKeyQueue"/> keeps per queue slot (docs/method.md R4); both give the same masks and losses.</summary>
public enum QueueSelectionCacheMode
{
    /// <summary>
    /// Per level and slot j, the rejection threshold t_l[c, j] = max(p_l(c | z_j), 1e-3) for every prototype c,
    /// <c>[k_l, Q]</c>: a step reads B rows per level (O(Q·B); in place on the CPU), no product with the prototypes at all.
    /// Memory Q · Σ_l k_l values (about 393 MB in float32 for Q = 16384 and 3000 + 2000 + 1000 prototypes).
    /// </summary>
    Thresholds,

    /// <summary>
    /// Per level and slot j, only the log-normaliser logZ_l[j], <c>[Q]</c>: a step recomputes the B × Q
    /// numerators with one <c>[B, d] × [d, Q]</c> product per level (O(Q·B·d)). Memory Q · L values.
    /// </summary>
    Normalisers,
}
