using Hcsc.Core.Options;

namespace Hcsc.Models.Backbones;

/// <summary>The kind of residual block a ResNet is made of.</summary>
public enum ResidualBlockKind
{
    /// <summary>Two 3×3 convolutions, expansion 1 (ResNet-18/34).</summary>
    Basic,

    /// <summary>1×1 → 3×3 → 1×1 convolutions, expansion 4 (ResNet-50/101/152).</summary>
    Bottleneck,
}

/// <summary>A ResNet architecture: its block kind and the number of blocks in <c>layer1</c>–<c>layer4</c>.</summary>
/// <param name="Name">torchvision's name, e.g. <c>resnet50</c>.</param>
/// <param name="Block">The residual block kind.</param>
/// <param name="Layers">Blocks per stage, four entries.</param>
public sealed record ResNetArchitecture(string Name, ResidualBlockKind Block, IReadOnlyList<int> Layers)
{
    /// <summary>Output channels of a block relative to its planes: 1 for basic blocks, 4 for bottlenecks.</summary>
    public int Expansion => Block == ResidualBlockKind.Basic ? 1 : 4;
}

/// <summary>The five torchvision ResNet architectures.</summary>
public static class ResNetArchitectures
{
    private static readonly Dictionary<string, ResNetArchitecture> All = new(StringComparer.OrdinalIgnoreCase)
    {
        ["resnet18"] = new("resnet18", ResidualBlockKind.Basic, [2, 2, 2, 2]),
        ["resnet34"] = new("resnet34", ResidualBlockKind.Basic, [3, 4, 6, 3]),
        ["resnet50"] = new("resnet50", ResidualBlockKind.Bottleneck, [3, 4, 6, 3]),
        ["resnet101"] = new("resnet101", ResidualBlockKind.Bottleneck, [3, 4, 23, 3]),
        ["resnet152"] = new("resnet152", ResidualBlockKind.Bottleneck, [3, 8, 36, 3]),
    };

    /// <summary>The known names, in order of depth: <see cref="HcscOptionsValidator.KnownArchitectures"/>, what <c>Model:Arch</c> may name (a test checks that this table has exactly these).</summary>
    public static IReadOnlyList<string> Names => HcscOptionsValidator.KnownArchitectures;

    /// <summary>Looks an architecture up by name (case-insensitive).</summary>
    public static bool TryGet(string? name, out ResNetArchitecture architecture)
    {
        if (name is not null && All.TryGetValue(name.Trim(), out var found))
        {
            architecture = found;
            return true;
        }

        architecture = null!;
        return false;
    }

    /// <summary>Returns the architecture named <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">The name is not one of <see cref="Names"/>.</exception>
    public static ResNetArchitecture Get(string name) =>
        TryGet(name, out var architecture)
            ? architecture
            : throw new ArgumentException($"Arch '{name}' is not known. Use one of: {string.Join(", ", Names)}.", nameof(name));
}
