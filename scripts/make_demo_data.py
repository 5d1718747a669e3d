"""Generate the demo input: a small gzipped WARC of web-like pages the project writes itself.

The pages mix languages, boilerplate, an exact duplicate, a redirect, a 404, a binary payload
mislabelled as HTML, a request record and an EUC-JP page without a charset header, so the
quickstart run exercises every counted reason of the reader and the first stages.

    python scripts/make_demo_data.py demo-data/demo.warc.gz
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import uuid
from pathlib import Path

from fastwarc.stream_io import GzipWriter
from fastwarc.warc import WarcRecord, WarcRecordType

ARTICLES: list[tuple[str, str, str, list[str]]] = [
    (
        "en",
        "https://garden.example.org/blog/composting-basics",
        "Composting basics for small gardens",
        [
            "Composting turns kitchen scraps and garden waste into a dark, crumbly material "
            "that feeds the soil. The process relies on bacteria, fungi and small animals that "
            "break down organic matter when they have enough air, water and a good balance of "
            "materials rich in carbon and nitrogen.",
            "A simple rule of thumb is to mix roughly three parts of brown material, such as "
            "dry leaves, straw or shredded cardboard, with one part of green material, such as "
            "vegetable peelings, coffee grounds or fresh grass clippings. Too much green material "
            "makes the heap wet and smelly, while too much brown material slows everything down.",
            "Turning the heap every week or two lets air reach the centre, which keeps the "
            "helpful organisms active. In warm weather a well managed heap can be ready in two "
            "or three months; in winter it may take twice as long. Finished compost smells like "
            "a forest floor and no longer shows the shape of the original scraps.",
            "Spread a layer of a few centimetres on your beds in spring, or mix it into the top "
            "of the soil before planting. Your plants will reward you with stronger roots and "
            "better harvests, and you will send far less waste to the landfill.",
        ],
    ),
    (
        "en",
        "https://rail.example.com/history/night-trains",
        "The quiet return of the night train",
        [
            "For much of the late twentieth century, overnight trains across Europe were "
            "disappearing. Cheap flights and faster daytime services made the sleeping car look "
            "like a relic, and operators cut routes that had run for decades.",
            "In recent years the trend has reversed. Travellers who want to avoid short flights "
            "have discovered that a night train turns travel time into sleeping time, and that "
            "arriving in the centre of a city at breakfast is often more convenient than a trip "
            "from a distant airport.",
            "Operators have responded with new carriages that offer small private compartments, "
            "showers and reliable connections to daytime trains. Not every route pays for "
            "itself, and the rolling stock is expensive, but several countries now treat night "
            "services as part of their climate policy rather than as a nostalgic curiosity.",
            "Whether the revival lasts will depend on ticket prices, track access charges and "
            "the willingness of governments to coordinate timetables across borders. For now, "
            "the sight of a sleeper pulling out of a station at ten in the evening is becoming "
            "familiar again.",
        ],
    ),
    (
        "en",
        "https://kitchen.example.net/recipes/sourdough-starter",
        "How to keep a sourdough starter alive",
        [
            "A sourdough starter is a living culture of wild yeast and lactic acid bacteria. It "
            "needs regular meals of flour and water, and it rewards attention with bread that has "
            "a deep flavour and a chewy crust.",
            "Keep the starter in a glass jar with a loose lid at room temperature if you bake "
            "often, and feed it once or twice a day by discarding most of it and adding fresh "
            "flour and water in equal weights. If you bake only once a week, store it in the "
            "fridge and feed it the day before you plan to mix your dough.",
            "A healthy starter doubles in size within a few hours of feeding and smells pleasantly "
            "sour. A layer of grey liquid on top simply means that it is hungry; pour it off and "
            "feed the culture. Pink or orange streaks, on the other hand, are a sign of spoilage, "
            "and the safest choice is to start again.",
        ],
    ),
    (
        "de",
        "https://wandern.example.de/touren/hoehenweg",
        "Auf dem Höhenweg durch die Mittelgebirge",
        [
            "Der Höhenweg führt über mehr als hundert Kilometer durch Wälder, über Bergwiesen "
            "und an alten Burgruinen vorbei. Die Strecke ist gut markiert und lässt sich in sechs "
            "bis sieben Tagesetappen bequem bewältigen.",
            "Unterwegs gibt es zahlreiche Gasthäuser und Hütten, in denen Wanderer übernachten "
            "können. Wer im Sommer unterwegs ist, sollte die Unterkünfte jedoch rechtzeitig "
            "reservieren, denn an Wochenenden sind viele Zimmer schnell ausgebucht.",
            "Besonders schön ist der Weg im Herbst, wenn sich die Buchenwälder golden färben und "
            "die Luft klar ist. Von den Aussichtspunkten reicht der Blick dann oft bis zu den "
            "Gipfeln am Horizont, und am Abend wartet in den Dörfern eine warme Mahlzeit.",
        ],
    ),
    (
        "fr",
        "https://patrimoine.example.fr/articles/moulins-a-vent",
        "Les moulins à vent de nos campagnes",
        [
            "Pendant des siècles, les moulins à vent ont transformé le grain en farine dans les "
            "campagnes où les rivières manquaient de force. Leur silhouette faisait partie du "
            "paysage et chaque village ou presque possédait le sien.",
            "Avec l'arrivée des minoteries industrielles, la plupart de ces bâtiments ont été "
            "abandonnés. Beaucoup ont perdu leurs ailes, d'autres ont été transformés en "
            "habitations ou en entrepôts, et certains ont tout simplement disparu.",
            "Depuis quelques décennies, des associations de bénévoles restaurent les moulins les "
            "mieux conservés. Elles organisent des visites, expliquent le fonctionnement des "
            "meules et, les jours de vent, remettent parfois les mécanismes en marche pour le "
            "plus grand plaisir des enfants et des curieux.",
        ],
    ),
    (
        "es",
        "https://ciencia.example.es/divulgacion/mareas",
        "Por qué existen las mareas",
        [
            "Las mareas son el ascenso y descenso periódico del nivel del mar. Se producen "
            "principalmente por la atracción gravitatoria de la Luna y, en menor medida, del Sol "
            "sobre las grandes masas de agua de los océanos.",
            "Como la Luna atrae con más fuerza el lado de la Tierra que está más cerca de ella, "
            "el agua se acumula en ese lado y también en el opuesto, donde la atracción es más "
            "débil. Por eso en muchas costas hay dos mareas altas y dos mareas bajas cada día.",
            "Cuando el Sol y la Luna se alinean, durante la luna nueva y la luna llena, sus "
            "efectos se suman y aparecen las mareas vivas, con una diferencia mayor entre la "
            "pleamar y la bajamar. En los cuartos crecientes y menguantes ocurre lo contrario.",
        ],
    ),
    (
        "ja",
        "https://tabi.example.jp/column/onsen",
        "温泉旅行を楽しむためのヒント",
        [
            "日本には数多くの温泉地があり、季節ごとに違った楽しみ方ができます。春は桜を眺めながら、"
            "夏は山の涼しい空気の中で、秋は紅葉に囲まれて、冬は雪景色を見ながら湯につかることができます。",
            "温泉に入る前には、まず体を洗ってから湯船に入るのが基本的なマナーです。タオルを湯の中に"
            "入れないこと、長湯をしすぎないこと、そして入浴の前後に水分をしっかりとることも大切です。",
            "旅館に泊まる場合は、地元の食材を使った夕食も大きな楽しみの一つです。"
            "ゆっくりと時間をかけて、その土地ならではの味を楽しんでください。",
        ],
    ),
]

NAV = (
    "<nav><ul><li><a href='/'>Home</a></li><li><a href='/about'>About</a></li>"
    "<li><a href='/contact'>Contact</a></li><li><a href='/login'>Sign in</a></li></ul></nav>"
)
FOOTER = (
    "<footer><p>Copyright 2024. All rights reserved.</p><p><a href='/privacy'>Privacy policy"
    "</a> | <a href='/terms'>Terms of use</a></p></footer>"
)


def page(lang: str, title: str, paragraphs: list[str]) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<!DOCTYPE html>\n<html lang='{lang}'><head><meta charset='utf-8'><title>{title}"
        f"</title></head><body>{NAV}<main><article><h1>{title}</h1>{body}</article></main>"
        f"{FOOTER}</body></html>"
    )


def http_response(body: bytes, content_type: str | None, status: str = "200 OK") -> bytes:
    headers = [f"HTTP/1.1 {status}", "Server: demo"]
    if content_type:
        headers.append(f"Content-Type: {content_type}")
    headers.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def record(
    record_type: WarcRecordType, url: str, payload: bytes, content_type: str, date: str
) -> WarcRecord:
    rec = WarcRecord()
    # A stable id per (type, url, payload) keeps the demo output identical across machines.
    digest = hashlib.sha1(record_type.__repr__().encode() + url.encode() + payload).hexdigest()
    rec.init_headers(record_type, f"uuid:{uuid.UUID(digest[:32])}".encode())
    rec.headers["WARC-Target-URI"] = url
    rec.headers["WARC-Date"] = date
    rec.headers["Content-Type"] = content_type
    rec.set_bytes_content(payload)
    return rec


def build_records() -> list[WarcRecord]:
    http = "application/http; msgtype=response"
    date = "2024-05-20T10:{:02d}:00Z"
    recs = []
    for i, (lang, url, title, paras) in enumerate(ARTICLES):
        body = page(lang, title, paras).encode("utf-8")
        recs.append(
            record(
                WarcRecordType.request,
                url,
                b"GET / HTTP/1.1\r\n\r\n",
                "application/http; msgtype=request",
                date.format(i),
            )
        )
        recs.append(
            record(
                WarcRecordType.response,
                url,
                http_response(body, "text/html; charset=utf-8"),
                http,
                date.format(i),
            )
        )
    # An exact copy of the first article under another URL (a mirror).
    lang, _, title, paras = ARTICLES[0]
    mirror = page(lang, title, paras).encode("utf-8")
    recs.append(
        record(
            WarcRecordType.response,
            "https://mirror.example.org/composting",
            http_response(mirror, "text/html; charset=utf-8"),
            http,
            date.format(30),
        )
    )
    # EUC-JP page whose only charset hint is the meta tag.
    lang, url, title, paras = ARTICLES[6]
    euc = page(lang, title, paras).replace("charset='utf-8'", "charset='euc-jp'").encode("euc-jp")
    recs.append(
        record(
            WarcRecordType.response,
            url.replace("onsen", "onsen-euc"),
            http_response(euc, "text/html"),
            http,
            date.format(31),
        )
    )
    # Navigation-only page: extraction finds no main text.
    empty = f"<html><body>{NAV}{FOOTER}</body></html>".encode()
    recs.append(
        record(
            WarcRecordType.response,
            "https://garden.example.org/tags",
            http_response(empty, "text/html"),
            http,
            date.format(32),
        )
    )
    # A redirect, a 404, an image labelled as HTML, a PDF and a page without a content type.
    recs.append(
        record(
            WarcRecordType.response,
            "https://garden.example.org/old",
            http_response(b"", None, "301 Moved Permanently"),
            http,
            date.format(33),
        )
    )
    recs.append(
        record(
            WarcRecordType.response,
            "https://garden.example.org/missing",
            http_response(b"<html><body>Not found</body></html>", "text/html", "404 Not Found"),
            http,
            date.format(34),
        )
    )
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    recs.append(
        record(
            WarcRecordType.response,
            "https://garden.example.org/logo",
            http_response(png, "text/html"),
            http,
            date.format(35),
        )
    )
    recs.append(
        record(
            WarcRecordType.response,
            "https://garden.example.org/guide.pdf",
            http_response(b"%PDF-1.4\n" + bytes(512), "application/pdf"),
            http,
            date.format(36),
        )
    )
    lang, _, title, paras = ARTICLES[1]
    sniffed = "\n  <!-- served without a content type -->\n" + page(lang, title, paras[:3])
    recs.append(
        record(
            WarcRecordType.response,
            "https://rail.example.com/history/sleepers",
            http_response(sniffed.encode(), None),
            http,
            date.format(37),
        )
    )
    return recs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default="demo-data/demo.warc.gz")
    args = parser.parse_args(argv)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    stream = GzipWriter(str(out))
    n = 0
    for rec in build_records():
        rec.write(stream, checksum_data=True)
        n += 1
    stream.close()
    print(f"wrote {n} records to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
