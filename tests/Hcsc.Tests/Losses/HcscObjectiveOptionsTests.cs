using Hcsc.Core.Options;
using Hcsc.Losses;

namespace Hcsc.Tests.Losses;

public class HcscObjectiveOptionsTests
{
    [Fact]
    public void The_presets_name_the_reference_and_the_paper_behaviours()
    {
        var reference = HcscObjectiveOptions.Reference();
        reference.UnselectedNegatives.Should().Be(UnselectedNegativeHandling.ZeroLogit);
        reference.InstanceLevelReduction.Should().Be(LevelReduction.Sum);
        reference.ReproduceReferenceOffByOne.Should().BeTrue();
        reference.Temperature.Should().Be(0.2);

        var paper = HcscObjectiveOptions.Paper();
        paper.UnselectedNegatives.Should().Be(UnselectedNegativeHandling.Exclude);
        paper.ReproduceReferenceOffByOne.Should().BeFalse();

        var defaults = new HcscObjectiveOptions();
        defaults.ReproduceReferenceOffByOne.Should().BeFalse("R3 is a bug, fixed by default");
        defaults.UnselectedNegatives.Should().Be(UnselectedNegativeHandling.ZeroLogit);
        defaults.InstanceSelection.Should().BeTrue();
        defaults.PrototypeSelection.Should().BeTrue();
        defaults.SelectionOnLocalViews.Should().BeTrue();
    }

    [Fact]
    public void Options_map_from_the_library_wide_configuration()
    {
        var hcsc = new HcscOptions();
        hcsc.Model.Temperature = 0.1;
        hcsc.Selection.InstanceSelection = false;
        hcsc.Selection.SelectionOnLocalViews = false;
        hcsc.Selection.UnselectedNegatives = UnselectedNegativeHandling.Exclude;
        hcsc.Selection.InstanceLevelReduction = LevelReduction.Mean;
        hcsc.Selection.ReproduceReferenceOffByOne = true;
        var o = HcscObjectiveOptions.From(hcsc);
        o.Temperature.Should().Be(0.1);
        o.InstanceSelection.Should().BeFalse();
        o.PrototypeSelection.Should().BeTrue();
        o.SelectionOnLocalViews.Should().BeFalse();
        o.UnselectedNegatives.Should().Be(UnselectedNegativeHandling.Exclude);
        o.InstanceLevelReduction.Should().Be(LevelReduction.Mean);
        o.ReproduceReferenceOffByOne.Should().BeTrue();
    }

    [Fact]
    public void The_objective_keeps_its_own_copy_of_the_options()
    {
        var options = new HcscObjectiveOptions { Temperature = 0.3 };
        using var objective = new HcscObjective(options);
        options.Temperature = 5;
        objective.Options.Temperature.Should().Be(0.3);
    }
}
