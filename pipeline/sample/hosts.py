"""The invented sites the sample's pages and images live on: reserved ``*.example.{com,org,net}`` names only."""

CDN = "https://cdn.example.net"
BLOG = "https://www.photo-blog.example.com"
SHOP = "https://shop.example.org"
MARKET = "https://market.example.com"
RECIPES = "https://recipes.example.net"
GARDEN = "https://garden-diary.example.org"
