using System.Globalization;

namespace Hcsc.Samples.ImageNetPretrain.Evaluation;

/// <summary>Which training images keep their labels in a semi-supervised evaluation.</summary>
public static class LabelSubset
{
    /// <summary>
    /// A class-balanced draw: for every class, ⌈<paramref name="percent"/> / 100 · n_c⌉ of its n_c images (at least one),
    /// chosen by a seeded shuffle; sorted indices. The same seed gives the same subset.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="percent"/> is not in (0, 100].</exception>
    public static int[] Draw(IReadOnlyList<int> labels, double percent, int seed)
    {
        ArgumentNullException.ThrowIfNull(labels);
        if (!(percent > 0 && percent <= 100))
        {
            throw new ArgumentOutOfRangeException(nameof(percent), $"--percent must lie in (0, 100], got {percent}.");
        }

        var random = new Random(seed);
        var chosen = new List<int>();
        foreach (var group in Enumerable.Range(0, labels.Count).GroupBy(i => labels[i]).OrderBy(g => g.Key))
        {
            int[] members = group.ToArray();
            random.Shuffle(members);
            chosen.AddRange(members.Take(Math.Max(1, (int)Math.Ceiling(percent / 100 * members.Length))));
        }

        chosen.Sort();
        return chosen.ToArray();
    }

    /// <summary>
    /// Reads a list file: one training-image index per line (blank lines and lines starting with '#' ignored), as the
    /// reference's 1 % / 10 % files name one image per line.
    /// </summary>
    /// <exception cref="InvalidDataException">A line is not an index within <paramref name="count"/> images; names the line.</exception>
    public static int[] Read(string path, int count)
    {
        var indices = new List<int>();
        int lineNumber = 0;
        foreach (string raw in File.ReadLines(path))
        {
            lineNumber++;
            string line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }

            if (!int.TryParse(line, NumberStyles.None, CultureInfo.InvariantCulture, out int index) || index >= count)
            {
                throw new InvalidDataException($"{path}, line {lineNumber}: '{line}' is not the index of one of the {count} training images (0 to {count - 1}).");
            }

            indices.Add(index);
        }

        if (indices.Count == 0)
        {
            throw new InvalidDataException($"{path} lists no images.");
        }

        return indices.Distinct().Order().ToArray();
    }
}
