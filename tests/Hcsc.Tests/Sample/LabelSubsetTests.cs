using Hcsc.Samples.ImageNetPretrain.Evaluation;

namespace Hcsc.Tests.Sample;

public sealed class LabelSubsetTests : IDisposable
{
    private readonly string _file = Path.GetTempFileName();

    public void Dispose() => File.Delete(_file);

    [Fact]
    public void A_draw_takes_the_percentage_of_every_class_rounded_up_and_is_fixed_by_the_seed()
    {
        // 3 classes with 100, 50 and 7 images.
        int[] labels = [.. Enumerable.Repeat(0, 100), .. Enumerable.Repeat(1, 50), .. Enumerable.Repeat(2, 7)];
        var subset = LabelSubset.Draw(labels, 10, seed: 4);
        subset.GroupBy(i => labels[i]).ToDictionary(g => g.Key, g => g.Count()).Should().Equal(new Dictionary<int, int> { [0] = 10, [1] = 5, [2] = 1 });
        subset.Should().BeInAscendingOrder().And.OnlyHaveUniqueItems();
        LabelSubset.Draw(labels, 10, seed: 4).Should().Equal(subset);
        LabelSubset.Draw(labels, 10, seed: 5).Should().NotEqual(subset);
        LabelSubset.Draw(labels, 1, seed: 0).Should().HaveCount(3, "at least one image per class");
        var act = () => LabelSubset.Draw(labels, 0, seed: 0);
        act.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*--percent*(0, 100]*");
    }

    [Fact]
    public void A_list_file_gives_indices_and_a_bad_line_is_named()
    {
        File.WriteAllLines(_file, ["# 1 % subset", "5", "", "2", "5"]);
        LabelSubset.Read(_file, count: 10).Should().Equal(2, 5);
        File.WriteAllLines(_file, ["1", "n02119789_123.JPEG"]);
        var act = () => LabelSubset.Read(_file, count: 10);
        act.Should().Throw<InvalidDataException>().WithMessage("*line 2*'n02119789_123.JPEG' is not the index of one of the 10 training images*");
        File.WriteAllLines(_file, ["12"]);
        act.Should().Throw<InvalidDataException>().WithMessage("*line 1*'12'*");
    }
}
