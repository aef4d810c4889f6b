package io.lora4j.report;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.io.FormatException;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import javax.imageio.ImageIO;
import javax.xml.parsers.DocumentBuilderFactory;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.w3c.dom.Document;

class LossChartTest {
    @TempDir
    Path dir;

    @BeforeAll
    static void headless() {
        System.setProperty("java.awt.headless", "true");
    }

    private Path sample() throws IOException {
        Path m = dir.resolve("metrics.jsonl");
        StringBuilder sb = new StringBuilder("{\"step\":0,\"eval_loss\":3.2}\n");
        for (int s = 1; s <= 20; s++) {
            sb.append("{\"step\":").append(s).append(",\"loss\":").append(3.0 - 0.1 * s).append(",\"learning_rate\":2e-4,\"grad_norm\":1.0");
            if (s % 5 == 0) sb.append(",\"eval_loss\":").append(3.1 - 0.08 * s);
            sb.append("}\n");
        }
        sb.append("{\"peak_bytes\":{\"weights\":123},\"train_runtime\":1.5}\n");
        Files.writeString(m, sb);
        return m;
    }

    @Test
    void readsBothSeries() throws IOException {
        LossChart.Curves c = LossChart.read(sample());
        assertEquals(20, c.train().getItemCount());
        assertEquals(5, c.eval().getItemCount()); // steps 0, 5, 10, 15, 20
        assertEquals(0.0, c.eval().getX(0).doubleValue());
        assertEquals(1.0, c.train().getY(19).doubleValue(), 1e-9);
    }

    @Test
    void writesPngAndSvg() throws Exception {
        Path out = dir.resolve("run");
        LossChart.write(sample(), out);
        BufferedImage img = ImageIO.read(out.resolve("loss.png").toFile());
        assertEquals(LossChart.WIDTH, img.getWidth());
        assertEquals(LossChart.HEIGHT, img.getHeight());
        // not a blank image: the plot has the train series' colour somewhere
        boolean blue = false;
        for (int y = 0; y < img.getHeight() && !blue; y++)
            for (int x = 0; x < img.getWidth() && !blue; x++) blue = (img.getRGB(x, y) & 0xffffff) == 0x1f77b4;
        assertTrue(blue, "train line drawn");
        DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
        f.setFeature("http://apache.org/xml/features/nonvalidating/load-external-dtd", false);
        Document d = f.newDocumentBuilder().parse(out.resolve("loss.svg").toFile());
        assertEquals("svg", d.getDocumentElement().getLocalName() != null ? d.getDocumentElement().getLocalName() : d.getDocumentElement().getTagName());
        String svg = Files.readString(out.resolve("loss.svg"));
        assertTrue(svg.contains(LossChart.TRAIN_SERIES) && svg.contains(LossChart.EVAL_SERIES), "legend names both series");
        assertTrue(svg.contains("optimizer step") && svg.contains("loss (nats per token)"), "axis labels");
        try (var s = Files.list(out)) {
            assertEquals(2, s.count(), "no temp files left");
        }
    }

    @Test
    void malformedRowNamesFileAndLine() throws IOException {
        Path m = dir.resolve("metrics.jsonl");
        Files.writeString(m, "{\"step\":1,\"loss\":2.0}\n{\"step\":2,\"loss\":\"high\"}\n");
        FormatException e = assertThrows(FormatException.class, () -> LossChart.write(m, dir.resolve("o")));
        assertTrue(e.getMessage().contains(m.toString()) && e.getMessage().contains("line 2") && e.getMessage().contains("loss"), e.getMessage());
        Files.writeString(m, "{\"step\":1,\"loss\":2.0}\n{\"step\":2,\n");
        e = assertThrows(FormatException.class, () -> LossChart.read(m));
        assertTrue(e.getMessage().contains("line 2") && e.getMessage().contains("not valid JSON"), e.getMessage());
        Files.writeString(m, "{\"train_runtime\":1}\n");
        e = assertThrows(FormatException.class, () -> LossChart.read(m));
        assertTrue(e.getMessage().contains("no row"), e.getMessage());
        assertTrue(!Files.exists(dir.resolve("o").resolve("loss.png")), "nothing written for bad input");
    }
}
